package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// These tests need no service: help, usage errors and configuration
// errors are decided before anything connects.

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command and action answers --help on stdout with exit 0.
func TestHelpOnEveryCommand(t *testing.T) {
	cases := [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"reconcile", "--help"},
		{"quarantine", "--help"}, {"quarantine", "list", "--help"}, {"quarantine", "show", "--help"},
		{"quarantine", "replay", "--help"}, {"quarantine", "discard", "-h"},
		{"conflicts", "--help"}, {"conflicts", "list", "--help"}, {"conflicts", "show", "--help"}, {"conflicts", "resolve", "--help"},
		{"inspect", "--help"},
		{"pollers", "--help"}, {"pollers", "start", "--help"}, {"pollers", "stop", "--help"}, {"pollers", "status", "--help"},
		{"publish", "--help"},
		{"deploy", "--help"}, {"deploy", "list", "--help"}, {"deploy", "current", "--help"}, {"deploy", "ramp", "--help"},
		{"deploy", "rollback", "--help"}, {"deploy", "drained", "--help"},
	}
	for _, args := range cases {
		code, out, errOut := runCLI(t, nil, args...)
		if code != exitOK || !strings.HasPrefix(out, "Usage: starter") || errOut != "" {
			t.Errorf("starter %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	// Flags are documented in the help.
	_, out, _ := runCLI(t, nil, "reconcile", "--help")
	for _, f := range []string{"--since", "--dry-run", "--rate", "--stuck-after"} {
		if !strings.Contains(out, f) {
			t.Errorf("reconcile --help lacks %s", f)
		}
	}
	_, out, _ = runCLI(t, nil, "publish", "--help")
	for _, f := range []string{"--count", "--dup-rate", "--bad-rate"} {
		if !strings.Contains(out, f) {
			t.Errorf("publish --help lacks %s", f)
		}
	}
}

// Usage errors exit 2 with the usage on stderr.
func TestUsageErrorsExit2(t *testing.T) {
	cases := [][]string{
		{},
		{"frobnicate"},
		{"reconcile", "--no-such-flag"},
		{"reconcile", "--rate", "fast"},
		{"reconcile", "--rate", "10/h"},
		{"reconcile", "extra-arg"},
		{"reconcile", "--since", "yesterday"},
		{"quarantine"},
		{"quarantine", "purge"},
		{"quarantine", "show"},
		{"quarantine", "show", "abc"},
		{"quarantine", "replay"},
		{"quarantine", "replay", "0"},
		{"quarantine", "discard", "1"},
		{"quarantine", "list", "--status", "gone"},
		{"conflicts", "resolve", "k1"},
		{"conflicts", "resolve", "k1", "--keep", "both"},
		{"conflicts", "resolve", "--keep", "incoming"},
		{"conflicts", "list", "--status", "maybe"},
		{"inspect"},
		{"deploy"}, {"deploy", "promote"}, {"deploy", "current"}, {"deploy", "current", "a", "b"},
		{"deploy", "ramp", "b2"}, {"deploy", "ramp", "b2", "150"}, {"deploy", "ramp", "b2", "ten"}, {"deploy", "ramp", "--stop", "b2"},
		{"deploy", "rollback", "a", "b"}, {"deploy", "drained"}, {"deploy", "drained", "b1", "--wait", "soon"}, {"deploy", "list", "x"},
		{"inspect", "a", "b"},
		{"pollers", "restart"},
		{"pollers", "stop", "now"},
		{"publish", "--count", "0"},
		{"publish", "--bad-rate", "1.5"},
		{"publish", "--dup-rate", "0.6", "--bad-rate", "0.6"},
	}
	for _, args := range cases {
		code, out, errOut := runCLI(t, nil, args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "Usage: starter") {
			t.Errorf("starter %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// Operational failures exit 1: here the configuration is missing.
func TestMissingConfigurationExits1(t *testing.T) {
	for _, args := range [][]string{
		{"reconcile"}, {"quarantine", "list"}, {"conflicts", "list"}, {"inspect", "k1"},
		{"pollers", "status"}, {"publish", "--count", "1"}, {"deploy", "list"}, {"deploy", "drained", "b1"},
	} {
		code, _, errOut := runCLI(t, map[string]string{}, args...)
		if code != exitFailure || !strings.Contains(errOut, "invalid configuration") || !strings.Contains(errOut, "ROCKETMQ_ENDPOINT is required") {
			t.Errorf("starter %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

// Flags may follow positional arguments, as operators type them.
func TestFlagsAfterArguments(t *testing.T) {
	fs := newFlags("x")
	keep := fs.String("keep", "", "")
	id := fs.Int64("id", 0, "")
	pos, err := fs.parseAnywhere([]string{"key-1", "--keep", "incoming", "--id", "7", "--", "--odd"})
	if err != nil || *keep != "incoming" || *id != 7 || len(pos) != 2 || pos[0] != "key-1" || pos[1] != "--odd" {
		t.Fatalf("pos %q keep %q id %d err %v", pos, *keep, *id, err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"10/s": 10, "10": 10, "0.5/s": 0.5, "120/m": 2} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0/s", "-1", "x/s", "5/h"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}

// Masking hides every value, and names, booleans and lengths too.
func TestMaskBodyHidesPatientData(t *testing.T) {
	b := []byte(`{"patientData":{"patientId":"P-123","notes":"Jane Roe, diabetic","age":71,"tags":["x"],"vip":true,"ref":null,"insulin":{}},"deviceTimestamp":1732600000000}`)
	got := maskBody(b, false)
	for _, leak := range []string{"P-123", "Jane", "71", "1732600000000", `"x"`, "true", "null", "insulin", "patientId", "5 chars", "chars"} {
		if strings.Contains(got, leak) {
			t.Errorf("masked body shows %q: %s", leak, got)
		}
	}
	if !strings.Contains(got, "JSON object") || !strings.Contains(got, "--show-payload") {
		t.Errorf("masked body does not say what it is: %s", got)
	}
	if got := maskBody([]byte("Jane Roe {"), false); strings.Contains(got, "Jane") || !strings.Contains(got, "not valid JSON") {
		t.Errorf("non-JSON body: %s", got)
	}
	if got := maskBody(b, true); got != string(b) {
		t.Errorf("--show-payload altered the body: %s", got)
	}
	if maskField("P-1", false) == "P-1" || maskField("P-1", true) != "P-1" || maskField("", false) != maskField("P-1", false) {
		t.Error("maskField")
	}
}

// The operator's shares of the batch turn into the generator's counts.
func TestPublishShares(t *testing.T) {
	o := genOptions(1000, 0.1, 0.05, 0.05, 1, "p-")
	newN, dupN, changedN, badN := syncevent.GenCounts(o)
	if badN != 50 || dupN+changedN != 150 || newN != 800 || changedN < 45 || changedN > 55 {
		t.Fatalf("new %d dup %d changed %d bad %d", newN, dupN, changedN, badN)
	}
	o = genOptions(10, 0, 0, 0, 1, "")
	if newN, dupN, changedN, badN := syncevent.GenCounts(o); newN != 10 || dupN+changedN+badN != 0 {
		t.Fatalf("all new: %d %d %d %d", newN, dupN, changedN, badN)
	}
}

// A failure read raw from the server is decrypted with the configured key,
// and one that cannot be decrypted says so instead of showing the SDK's
// placeholder as the error.
func TestFailureTextDecryptsOrSaysItCannot(t *testing.T) {
	keyA := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	keyB := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	vars := func(kv ...string) func(string) string {
		m := map[string]string{
			"ROCKETMQ_ENDPOINT": "http://127.0.0.1:9876", "ALIBABA_ACCESS_KEY": "a", "ALIBABA_SECRET_KEY": "s",
			"ROCKETMQ_TOPIC": "t", "ROCKETMQ_GROUP_ID": "g", "POLARDB_ENDPOINT": "127.0.0.1:3306", "POLARDB_USER": "u",
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	envWith := func(getenv func(string) string) *env {
		cfg, err := config.Load(getenv)
		if err != nil {
			t.Fatal(err)
		}
		return &env{cfg: cfg}
	}
	writer := envWith(vars("SYNCBRIDGE_PAYLOAD_KEY", keyA))
	cfg := writer.cfg
	c, err := workerapp.PayloadCodec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := c.FailureConverter().ErrorToFailure(errors.New("insert failed: duplicate column"))
	if f.GetMessage() != "Encoded failure" {
		t.Fatalf("failure not encoded: %q", f.GetMessage())
	}
	if got := writer.failureText(f); got != "insert failed: duplicate column" {
		t.Fatalf("same key: %q", got)
	}
	for name, e := range map[string]*env{
		"wrong key": envWith(vars("SYNCBRIDGE_PAYLOAD_KEY", keyB)),
		"no key":    envWith(vars("SYNCBRIDGE_PAYLOAD_PLAINTEXT", "true")),
	} {
		if got := e.failureText(f); !strings.Contains(got, "cannot decrypt") {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// `codec-server --addr` bypasses the configuration's address check, so the
// server itself refuses to trust the UI's origin on a reachable address.
func TestCodecServerRefusesUIOriginOffLoopback(t *testing.T) {
	env := map[string]string{
		"ROCKETMQ_ENDPOINT": "http://127.0.0.1:9876", "ALIBABA_ACCESS_KEY": "a", "ALIBABA_SECRET_KEY": "s",
		"ROCKETMQ_TOPIC": "t", "ROCKETMQ_GROUP_ID": "g", "POLARDB_ENDPOINT": "127.0.0.1:3306", "POLARDB_USER": "u",
		"SYNCBRIDGE_PAYLOAD_KEY":     base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"SYNCBRIDGE_CODEC_TOKEN":     "cli:tok-9f2e",
		"SYNCBRIDGE_CODEC_AUTH":      "ui-origin",
		"SYNCBRIDGE_CODEC_UI_ORIGIN": "http://127.0.0.1:8233",
	}
	code, _, errOut := runCLI(t, env, "codec-server", "--addr", "0.0.0.0:0")
	if code != exitFailure || !strings.Contains(errOut, "ui-origin") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
