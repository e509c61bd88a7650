package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/logging"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func valid() map[string]string {
	return map[string]string{
		"ROCKETMQ_ENDPOINT":  "http://127.0.0.1:9876",
		"ALIBABA_ACCESS_KEY": "ak",
		"ALIBABA_SECRET_KEY": "s3cret-value",
		"ROCKETMQ_TOPIC":     "patient-sync",
		"ROCKETMQ_GROUP_ID":  "GID_sync",
		"POLARDB_ENDPOINT":   "db.internal:3306",
		"POLARDB_USER":       "sync",
		"POLARDB_PASSWORD":   "db-pa55word",
		// Production's defaults: encrypted payloads. The database link
		// override lets the TLS-mode tests start from plaintext; the
		// refusal itself is TestTransportRefusals'.
		"SYNCBRIDGE_PAYLOAD_KEY":  testKey,
		"POLARDB_ALLOW_PLAINTEXT": "true",
	}
}

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestDefaults(t *testing.T) {
	c, err := Load(env(valid()))
	if err != nil {
		t.Fatal(err)
	}
	if c.DB.MaxOpenConns != 10 || c.Pipeline.Pollers != 2 || c.Pipeline.BatchSize != 16 ||
		c.Pipeline.PollWait != 30*time.Second || c.Temporal.Address != "127.0.0.1:7233" ||
		c.Temporal.Namespace != "default" || c.Temporal.TaskQueue != "syncbridge" || c.MQ.Tag != "SyncEvent" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if !strings.Contains(c.DB.DSN, "tcp(db.internal:3306)/syncbridge") {
		t.Fatalf("DSN not built from parts: %s", RedactDSN(c.DB.DSN))
	}
}

func TestMissingAndInvalidAreAllNamed(t *testing.T) {
	m := valid()
	delete(m, "ROCKETMQ_TOPIC")
	delete(m, "ALIBABA_SECRET_KEY")
	m["SYNCBRIDGE_BATCH_SIZE"] = "17"
	m["SYNCBRIDGE_POLL_WAIT"] = "45s"
	m["POLARDB_ENDPOINT"] = "no-port"
	_, err := Load(env(m))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, name := range []string{"ROCKETMQ_TOPIC", "ALIBABA_SECRET_KEY", "SYNCBRIDGE_BATCH_SIZE", "SYNCBRIDGE_POLL_WAIT", "POLARDB_ENDPOINT"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	m := valid()
	c, err := Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), c.LogValue().String()} {
		for _, secret := range []string{"s3cret-value", "db-pa55word", m["SYNCBRIDGE_PAYLOAD_KEY"]} {
			if strings.Contains(s, secret) {
				t.Fatalf("secret leaked into %q", s)
			}
		}
	}
	// A bad DSN must not be echoed either.
	m2 := valid()
	m2["POLARDB_DSN"] = "user:hunter2@@bad"
	_, err = Load(env(m2))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad DSN: err=%v", err)
	}
}

func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := valid()
	delete(m, "ALIBABA_SECRET_KEY")
	m["ALIBABA_SECRET_KEY_FILE"] = f
	c, err := Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if c.MQ.SecretKey != "from-file" {
		t.Fatalf("secret from file: %q", c.MQ.SecretKey)
	}
	m["ALIBABA_SECRET_KEY"] = "also-direct"
	if _, err := Load(env(m)); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both direct and file must be refused: %v", err)
	}
}

func TestDSNOverridesParts(t *testing.T) {
	m := valid()
	delete(m, "POLARDB_ENDPOINT")
	delete(m, "POLARDB_USER")
	m["POLARDB_DSN"] = "u:p@tcp(10.0.0.1:3306)/records?parseTime=true"
	c, err := Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if c.DB.DSN != m["POLARDB_DSN"] || RedactDSN(c.DB.DSN) != "u@tcp(10.0.0.1:3306)/records" {
		t.Fatalf("DSN: %s", RedactDSN(c.DB.DSN))
	}
}

func TestPayloadKeyValidated(t *testing.T) {
	m := valid()
	m["SYNCBRIDGE_PAYLOAD_KEY"] = "c2hvcnQ="
	if _, err := Load(env(m)); err == nil || !strings.Contains(err.Error(), "SYNCBRIDGE_PAYLOAD_KEY") {
		t.Fatalf("short key: %v", err)
	}
}

func TestEveryVarDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars {
		if v.Doc == "" || seen[v.Name] {
			t.Fatalf("variable %s undocumented or listed twice", v.Name)
		}
		seen[v.Name] = true
	}
	// Loading with every default exercises defaultOf for each name read;
	// an undocumented name would panic here.
	if _, err := Load(env(valid())); err != nil {
		t.Fatal(err)
	}
}

func TestHandoverLimits(t *testing.T) {
	c, err := Load(env(valid()))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Pipeline; p.MaxWorkflowIDBytes != 1000 || p.MaxPayloadBytes != 2<<20 || p.MaxBodyBytes != 1<<20 ||
		p.DeviceTimeNotBefore.Year() != 1000 || p.DeviceTimeMaxAhead != 0 {
		t.Fatalf("defaults: %+v", p)
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		bad  string // variable named in the error; "" = valid
	}{
		{"compose ID limit", map[string]string{"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES": "255"}, ""},
		// A body the parser accepts must not be one Temporal refuses.
		{"body too large for the payload limit", map[string]string{"SYNCBRIDGE_MAX_BODY_BYTES": "1600000"}, "SYNCBRIDGE_MAX_BODY_BYTES"},
		{"payload limit lowered under the body", map[string]string{"SYNCBRIDGE_MAX_PAYLOAD_BYTES": "1048576"}, "SYNCBRIDGE_MAX_BODY_BYTES"},
		{"both lowered", map[string]string{"SYNCBRIDGE_MAX_PAYLOAD_BYTES": "1048576", "SYNCBRIDGE_MAX_BODY_BYTES": "700000"}, ""},
		{"prefix fills the ID", map[string]string{"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES": "64", "SYNCBRIDGE_WORKFLOW_ID_PREFIX": strings.Repeat("p", 64)}, "SYNCBRIDGE_WORKFLOW_ID_PREFIX"},
		{"prefix makes every ID reserved", map[string]string{"SYNCBRIDGE_WORKFLOW_ID_PREFIX": "poller-"}, "SYNCBRIDGE_WORKFLOW_ID_PREFIX"},
		{"ordinary prefix", map[string]string{"SYNCBRIDGE_WORKFLOW_ID_PREFIX": "rec/"}, ""},
		{"device time window", map[string]string{"SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE": "2000-01-01", "SYNCBRIDGE_DEVICE_TIME_MAX_AHEAD": "24h"}, ""},
		{"device time not a date", map[string]string{"SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE": "yesterday"}, "SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE"},
		{"device time before DATETIME", map[string]string{"SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE": "0999-12-31"}, "SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			for k, v := range tc.set {
				m[k] = v
			}
			_, err := Load(env(m))
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Fatalf("err = %v, want one naming %s", err, tc.bad)
			}
		})
	}
}

// JSON unless told otherwise, text by default under -dev; a bad value is
// refused by Load and by LogFormat (which -dev calls before Load) alike.
func TestLogFormat(t *testing.T) {
	c, err := Load(env(valid()))
	if err != nil || c.LogFormat != logging.JSON {
		t.Fatalf("default format %q, %v; want json", c.LogFormat, err)
	}
	for _, tc := range []struct {
		set  string
		dev  bool
		want logging.Format
	}{
		{"", false, logging.JSON},
		{"", true, logging.Text},
		{"json", true, logging.JSON},
		{"TEXT", false, logging.Text},
	} {
		m := map[string]string{"SYNCBRIDGE_LOG_FORMAT": tc.set}
		if got, err := LogFormat(env(m), tc.dev); err != nil || got != tc.want {
			t.Errorf("LogFormat(%q, dev=%t) = %q, %v; want %q", tc.set, tc.dev, got, err, tc.want)
		}
	}
	m := valid()
	m["SYNCBRIDGE_LOG_FORMAT"] = "logfmt"
	if _, err := Load(env(m)); err == nil || !strings.Contains(err.Error(), `SYNCBRIDGE_LOG_FORMAT must be json or text, got "logfmt"`) {
		t.Fatalf("Load: %v", err)
	}
	for _, dev := range []bool{false, true} {
		if _, err := LogFormat(env(m), dev); err == nil || !strings.Contains(err.Error(), "SYNCBRIDGE_LOG_FORMAT must be json or text") {
			t.Fatalf("LogFormat(dev=%t): %v", dev, err)
		}
	}
}
