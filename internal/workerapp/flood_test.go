package workerapp

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

// mode is a way of running the pipeline the exactly-once tests must hold
// for: the default (a record workflow per message) or flood mode.
type mode struct {
	flood bool
}

var (
	defaultMode = mode{}
	floodMode   = mode{flood: true}
)

// with adds the mode's variables to a test's own.
func (m mode) with(vars map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range vars {
		out[k] = v
	}
	if m.flood {
		out["SYNCBRIDGE_FLOOD_MODE"] = "true"
	}
	return out
}

// setDSNParam sets a session variable on the workers' database DSN.
func (p *pipe) setDSNParam(name, value string) {
	p.t.Helper()
	cfg, err := mysql.ParseDSN(p.vars["POLARDB_DSN"])
	if err != nil {
		p.t.Fatal(err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[name] = value
	p.vars["POLARDB_DSN"] = cfg.FormatDSN()
}

// Flood mode passes the exactly-once tests the default mode passes.
func TestFloodDrainWithDuplicateDelivery(t *testing.T) { drainWithDuplicateDelivery(t, floodMode) }
func TestFloodPoisonMessagesAreQuarantinedOnce(t *testing.T) {
	poisonQuarantinedOnce(t, floodMode)
}
func TestFloodDatabaseOutageMidDrain(t *testing.T) { databaseOutageMidDrain(t, floodMode) }
func TestFloodRedeliveryWhileRecordRuns(t *testing.T) {
	redeliveryWhileRecordRuns(t, floodMode)
}

// A worker process (the real binary) is killed with SIGKILL mid-drain,
// between any commit and its ack, and a new one takes over: nothing lost,
// nothing doubled, nothing dead-lettered.
func TestWorkerSIGKILLMidDrain(t *testing.T)      { sigkillMidDrain(t, defaultMode) }
func TestFloodWorkerSIGKILLMidDrain(t *testing.T) { sigkillMidDrain(t, floodMode) }

func sigkillMidDrain(t *testing.T, m mode) {
	// Short invisibility: what the killed worker held comes back quickly.
	p := newPipe(t, mqemu.Config{InvisibleTime: 5 * time.Second, Faults: mqemu.Faults{DuplicateRate: 0.1}, Seed: 3}, m.with(nil))
	w := p.worker(Options{}) // migrates, so rows can be counted
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := generate(syncevent.GenOptions{Count: 600, DistinctKeys: 500, ChangedRate: 0.3, BadRate: 0.02, Seed: 41, KeyPrefix: "kill-"})
	ids := p.publish(msgs)
	bin := testenv.WorkerBinary(t)
	first := p.process(bin)
	waitFor(t, 3*time.Minute, "a third of the rows", func() bool { return countRows(t, p.env.DB) >= 150 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("killed the worker at %d rows", countRows(t, p.env.DB))
	second := p.process(bin)
	t.Cleanup(func() { stopProcess(second) })
	p.waitDrained(len(msgs), 5*time.Minute)
	p.verify(expect(t, msgs, ids))
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
	}
}
