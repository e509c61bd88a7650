package systemdunit

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

const (
	repo     = "../.."
	unitPath = repo + "/deploy/systemd/syncbridge-worker.service"
	envPath  = repo + "/deploy/systemd/syncbridge-worker.env"
	// shippedExecStart is where the install steps put the binary.
	shippedExecStart = "/usr/local/bin/syncbridge-worker"
)

// systemdAnalyze returns the systemd-analyze binary. scripts/test.sh sets
// SYSTEMD_ANALYZE_REQUIRED=1 (scripts/ensure-services.sh installs Debian's
// systemd package), so there a missing tool fails instead of skipping.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("SYSTEMD_ANALYZE_REQUIRED") != "" {
			t.Fatal("systemd-analyze is not installed (scripts/ensure-services.sh installs Debian's systemd package)")
		}
		t.Skip("systemd-analyze not installed; scripts/ensure-services.sh installs it")
	}
	return bin
}

func readUnit(t *testing.T) Unit {
	t.Helper()
	u, err := ReadUnit(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// verifiableCopy writes the unit into a temporary directory with ExecStart
// pointing at a worker built from this tree: systemd-analyze verify checks
// that the binary exists and is executable, and the shipped path exists
// only on an installed host. Nothing else of the unit is changed.
func verifiableCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "syncbridge-worker")
	build := exec.Command("go", "build", "-tags", "nodev", "-o", bin, "./worker")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the worker: %v\n%s", err, out)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	shipped := "\nExecStart=" + shippedExecStart + "\n"
	if strings.Count(string(b), shipped) != 1 {
		t.Fatalf("the unit must have exactly one line %q (the install steps put the binary there)", strings.TrimSpace(shipped))
	}
	copyPath := filepath.Join(dir, "syncbridge-worker.service")
	if err := os.WriteFile(copyPath, []byte(strings.Replace(string(b), shipped, "\nExecStart="+bin+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return copyPath
}

// systemd-analyze verify prints unknown keys, unparseable values and bad
// specifiers as warnings and still exits 0, so any output fails too.
func TestUnitVerifies(t *testing.T) {
	tool := systemdAnalyze(t)
	unit := verifiableCopy(t)
	out, err := exec.Command(tool, "verify", "--man=no", "--recursive-errors=no", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The sandbox keeps its score: systemd-analyze security rates the unit's
// exposure from 0 (locked down) to 10; 2.0 is well inside its "OK" band,
// and dropping any of the main protections pushes the unit over it.
func TestUnitSandbox(t *testing.T) {
	tool := systemdAnalyze(t)
	out, err := exec.Command(tool, "security", "--offline=true", "--threshold=20", "--no-pager", unitPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security above 2.0: %v\n%s", err, out)
	}
}

// The protections the docs promise are set explicitly, whatever the score
// makes of them, and the credentials file is one systemd reads as root.
func TestUnitDeclaresItsSandbox(t *testing.T) {
	u := readUnit(t)
	for key, want := range map[string]string{
		"DynamicUser":     "yes",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"Restart":         "on-failure",
		"EnvironmentFile": "/etc/syncbridge/worker.env",
		"ExecStart":       shippedExecStart,
	} {
		if got, _ := u.Value("Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if got, _ := u.Value("Unit", "StartLimitIntervalSec"); got != "0" {
		t.Errorf("[Unit] StartLimitIntervalSec=%q: a worker that meets a database outage while starting must be restarted until it is back", got)
	}
}

// systemd sends SIGTERM, waits TimeoutStopSec, then SIGKILLs. The worker
// drains for up to workerapp.StopTimeout after SIGTERM and then flushes
// its acks and closes its connections: a shorter timeout would kill it
// with records committed and not acked (redelivered, harmless, but the
// drain's point is not to).
func TestStopTimeoutOutlastsDrain(t *testing.T) {
	u := readUnit(t)
	if sig, ok := u.Value("Service", "KillSignal"); ok && sig != "SIGTERM" {
		t.Errorf("KillSignal=%s; the worker drains on SIGTERM", sig)
	}
	raw, ok := u.Value("Service", "TimeoutStopSec")
	if !ok {
		t.Fatal("no TimeoutStopSec: systemd's default (90 s) is not longer than the worker's drain")
	}
	stop, err := ParseTimespan(raw)
	if err != nil {
		t.Fatal(err)
	}
	const margin = 10 * time.Second // ack flush and connection close after the drain
	if stop < workerapp.StopTimeout+margin {
		t.Errorf("TimeoutStopSec=%s (%s) does not outlast the worker's drain of %s plus %s", raw, stop, workerapp.StopTimeout, margin)
	}
}

// The environment file loads with the real config loader once the
// placeholders are filled in and the CA file it names exists, and sets
// nothing the worker does not read. The result is the production shape the
// docs describe: TLS to both the database (verified against the CA) and
// Temporal, encrypted payloads, probes reachable from outside the host.
func TestEnvironmentLoads(t *testing.T) {
	env, err := ReadEnvironmentFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range config.Vars {
		known[v.Name] = true
		if v.Secret {
			known[v.Name+"_FILE"] = true
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		if !known[k] {
			t.Errorf("%s is not read by the worker (typo?)", k)
		}
		if strings.HasPrefix(v, "REPLACE_") {
			env[k] = "filled-in-" + strings.ToLower(k)
			if k == "SYNCBRIDGE_PAYLOAD_KEY" {
				env[k] = base64.StdEncoding.EncodeToString(key)
			}
		}
	}
	// The CA is installed next to the file on a real host; the loader
	// opens and parses it, so give it a real certificate here.
	if ca := env["POLARDB_TLS_CA"]; !strings.HasPrefix(ca, "/etc/syncbridge/") {
		t.Errorf("POLARDB_TLS_CA=%q: the install steps put PolarDB's CA under /etc/syncbridge/", ca)
	}
	env["POLARDB_TLS_CA"] = "testdata/ca.pem"
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the environment is rejected by the worker: %v", err)
	}
	mc, err := mysql.ParseDSN(cfg.DB.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mc.TLSConfig, "syncbridge-") {
		t.Errorf("database TLS is %q, want verification against POLARDB_TLS_CA", mc.TLSConfig)
	}
	if !cfg.Temporal.TLS.Enabled || len(cfg.Pipeline.PayloadKeys) == 0 || cfg.Pipeline.PlaintextPayloads {
		t.Errorf("want TLS to Temporal and encrypted payloads: %s", cfg)
	}
	if cfg.MetricsAddr != "0.0.0.0:9090" {
		t.Errorf("SYNCBRIDGE_METRICS_ADDR=%q: /healthz and /readyz must be reachable from outside the host", cfg.MetricsAddr)
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"120": 120 * time.Second, "120s": 120 * time.Second, "2min": 2 * time.Minute,
		"2min 10s": 130 * time.Second, "1.5s": 1500 * time.Millisecond, "500ms": 500 * time.Millisecond,
	} {
		if got, err := ParseTimespan(in); err != nil || got != want {
			t.Errorf("ParseTimespan(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "infinity", "2 fortnights", "s"} {
		if _, err := ParseTimespan(in); err == nil {
			t.Errorf("ParseTimespan(%q) accepted", in)
		}
	}
}

func TestReadEnvironmentFileRefusesWhatSystemdReadsDifferently(t *testing.T) {
	for _, line := range []string{
		`A=b # comment`, `A="quoted"`, `A=back\slash`, `A b`, `1A=b`,
	} {
		p := filepath.Join(t.TempDir(), "env")
		if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEnvironmentFile(p); err == nil {
			t.Errorf("%q accepted", line)
		}
	}
}
