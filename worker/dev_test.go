//go:build !nodev

package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/devstack"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// These tests run the real `worker -dev` binary as a user would.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func workerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the worker -dev binary: skipped in -short mode")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "syncbridge-worker-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "worker")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type devProc struct {
	cmd    *exec.Cmd
	banner chan string
	// bannerText receives the banner once more, for tests that read it.
	bannerText chan string
	done       chan error
	// logPath holds the process's stderr (its log).
	logPath string
}

type devAddrs struct{ temporal, ui, mq, mysql, metrics, codec string }

func newAddrs(t *testing.T) devAddrs {
	return devAddrs{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
}

// startDev runs the binary and waits for its banner.
func startDev(t *testing.T, a devAddrs, env []string, args ...string) *devProc {
	t.Helper()
	all := append([]string{"-dev",
		"-dev-temporal-addr", a.temporal, "-dev-ui-addr", a.ui, "-dev-mq-addr", a.mq, "-dev-mysql-addr", a.mysql,
		"-dev-codec-addr", a.codec,
	}, args...)
	cmd := exec.Command(workerBinary(t), all...)
	cmd.Env = append(append(os.Environ(), "SYNCBRIDGE_METRICS_ADDR="+a.metrics), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(t.TempDir(), "worker-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProc{cmd: cmd, banner: make(chan string, 1), bannerText: make(chan string, 1), done: make(chan error, 1), logPath: logf.Name()}
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops everything") {
				p.banner <- b.String()
				p.bannerText <- b.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("worker log (tail):\n%s", tail(string(b), 4000))
			}
		}
	})
	select {
	case <-p.banner:
	case err := <-p.done:
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("worker -dev exited before it was up: %v\n%s", err, tail(string(b), 4000))
	case <-time.After(3 * time.Minute):
		t.Fatal("worker -dev not up after 3 minutes")
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop sends SIGTERM (what Ctrl-C and orchestrators send) and expects a
// clean exit 0.
func (p *devProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("worker -dev did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("worker -dev did not stop within 3 minutes of SIGTERM")
	}
}

func emulatorStats(t *testing.T, mqAddr string) mqemu.GroupStats {
	t.Helper()
	var st mqemu.GroupStats
	resp, err := http.Get("http://" + mqAddr + "/_emulator/stats?topic=" + devstack.DefaultTopic + "&group=" + devstack.DefaultGroup)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

func runningRecords(t *testing.T, c client.Client) int64 {
	resp, err := c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: contract.RecordTypesQuery + " AND ExecutionStatus = 'Running'",
	})
	if err != nil {
		return -1
	}
	return resp.GetCount()
}

// The dev stack with -dev-db keeps Temporal's and the emulator's state on
// disk: stopped mid-drain and started again, it finishes every record and
// writes no duplicate row.
func TestDevStackRestartMidDrain(t *testing.T) {
	dsn := storetest.NewDatabase(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := newAddrs(t)
	state := filepath.Join(t.TempDir(), "temporal.db")
	env := []string{"POLARDB_DSN=" + dsn}
	const n, rng = 300, 77
	rows := func() int {
		var c int
		if err := db.QueryRow("SELECT COUNT(*) FROM patient_records").Scan(&c); err != nil {
			return 0
		}
		return c
	}

	first := startDev(t, a, env, "-dev-db", state, "-dev-seed", fmt.Sprint(n), "-dev-seed-rng", fmt.Sprint(rng), "-mq-invisible", "10s")
	testwait.Until(t, 3*time.Minute, "first rows", func() bool { return rows() >= 20 })
	first.stop(t)
	mid := rows()
	t.Logf("stopped the stack at %d rows", mid)

	second := startDev(t, a, env, "-dev-db", state, "-dev-seed", "0", "-mq-invisible", "10s")
	c, err := client.Dial(client.Options{HostPort: a.temporal})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testwait.Until(t, 5*time.Minute, "drain after restart", func() bool {
		st := emulatorStats(t, a.mq)
		return st.Published == n && st.Ready == 0 && st.InFlight == 0 && st.Acked == n && runningRecords(t, c) == 0
	})
	if mid >= rows() {
		t.Logf("note: the drain had finished before the restart (%d rows)", mid)
	}

	var total, distinct int
	if err := db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT local_record_id) FROM patient_records").Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != distinct {
		t.Fatalf("%d rows for %d keys: duplicates after restart", total, distinct)
	}
	stored := map[string]bool{}
	for _, q := range []string{"SELECT local_record_id FROM patient_records", "SELECT local_record_id FROM sync_quarantine WHERE local_record_id IS NOT NULL"} {
		r, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var k string
			if err := r.Scan(&k); err != nil {
				t.Fatal(err)
			}
			stored[k] = true
		}
		r.Close()
	}
	for _, m := range demoBatch(n, rng) {
		if m.Key != "" && !stored[m.Key] {
			t.Fatalf("key %s published but neither stored nor quarantined", m.Key)
		}
	}
	second.stop(t)
}

// After the demo batch, the Web UI's workflow list, rendered by headless
// Chromium, shows the record workflows. Needs Debian's chromium; skipped
// with a message without it unless UI_CHECK_REQUIRED=1 (set by .ci/run).
func TestWebUIShowsRecordWorkflows(t *testing.T) {
	a := newAddrs(t)
	p := startDev(t, a, nil, "-dev-seed", "24", "-dev-seed-rng", "5")
	c, err := client.Dial(client.Options{HostPort: a.temporal})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testwait.Until(t, 3*time.Minute, "demo batch drained", func() bool {
		st := emulatorStats(t, a.mq)
		return st.Published == 24 && st.Acked == 24 && runningRecords(t, c) == 0
	})
	// Expect the newest record workflow IDs on the list's first page.
	var want []string
	for _, m := range demoBatch(24, 5) {
		if m.Key != "" && m.Kind == syncevent.KindNew {
			want = append(want, m.Key)
		}
	}
	want = want[len(want)-3:]
	out := os.Getenv("UI_CHECK_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "workflows.png")
	}
	args := append([]string{"http://" + a.ui + "/namespaces/default/workflows", out}, want...)
	cmd := exec.Command(filepath.Join("..", "scripts", "ui-check.sh"), args...)
	b, err := cmd.CombinedOutput()
	t.Logf("ui-check.sh:\n%s", b)
	if err != nil {
		t.Fatalf("Web UI check failed: %v", err)
	}
	if strings.HasPrefix(string(b), "SKIP") {
		t.Skip(strings.TrimSpace(string(b)))
	}
	p.stop(t)
}
