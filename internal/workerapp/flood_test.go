package workerapp

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
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
	testwait.Until(t, 3*time.Minute, "a third of the rows", func() bool { return countRows(t, p.env.DB) >= 150 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("killed the worker at %d rows", countRows(t, p.env.DB))
	second := p.process(bin)
	t.Cleanup(func() { stopProcess(second) })
	p.waitDrained(len(msgs), 5*time.Minute)
	p.verify(expect(t, msgs, ids))
	p.waitFindable(2 * time.Minute)
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

// Flood mode acks conflicts and quarantines right after their bulk commit
// and starts the record runs that show them in the Web UI afterwards. A
// worker that dies in that window (here: one whose notice starts never
// happen, then stopped) must not hide a record: the outbox rows it wrote
// with the commit are taken over by the next worker's sweep.
func TestFloodNoticesSurviveACrashAfterCommit(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, floodMode.with(map[string]string{"SYNCBRIDGE_FLOOD_NOTICE_LEASE": "3s"}))
	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 300, ChangedRate: 0.5, BadRate: 0.05, Seed: 77, KeyPrefix: "window-"})
	ids := p.publish(msgs)

	var held atomic.Int64
	first := p.worker(Options{NoticeHook: func(ctx context.Context, _ store.Notice) {
		held.Add(1)
		<-ctx.Done() // never started: the process "dies" before
	}})
	testwait.Until(t, 2*time.Minute, "every message acked", func() bool {
		st := p.env.MQ.Stats(p.env.Topic, p.env.Group)
		return st.Published == len(msgs) && st.Ready == 0 && st.InFlight == 0
	})
	// Runs are started once full or after the notices' linger (1 s), so
	// the drain may be acked before the first start is attempted.
	testwait.Until(t, time.Minute, "a notice start held", func() bool { return held.Load() > 0 })
	pending := p.pendingNotices()
	if pending == 0 || held.Load() == 0 {
		t.Fatalf("no notice was held in the window (pending %d, held %d): the test proves nothing", pending, held.Load())
	}
	// Shown so far: only exceptions the bulk path left to their record
	// workflows (a key running at the time, a key no notice can hold).
	shown := p.shownKeys("conflict")
	for k := range p.shownKeys("quarantined") {
		shown[k] = true
	}
	hidden := 0
	for _, k := range p.keys(pendingNoticeSQL) {
		if !shown[k] {
			hidden++
		}
	}
	if hidden == 0 {
		t.Fatal("every pending notice's key is shown already: the window was not exercised")
	}
	t.Logf("all acked with %d notices pending (%d keys not shown yet), %d start attempts held", pending, hidden, held.Load())
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	p.worker(Options{})
	p.waitFindable(time.Minute)
	p.verify(expect(t, msgs, ids))
	if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.DeadLettered != 0 || st.Delivered < st.Published {
		t.Fatalf("broker: %+v", st)
	}
}

// Notice runs are filled beyond Temporal's default 2 KiB of SyncKeys, up
// to the size the server takes (16 KiB on the test server, as deploy/
// configures a cluster): with keys of 100 bytes a run holds up to about
// 160 records, the server accepts every run (a value over its limit is
// refused, and those records would stay hidden), and some run lists more
// than 40. How full runs get depends on how many exceptions arrive within
// the notices' 1 s linger, which a slow machine stretches. A worker set to
// fill runs beyond the server's limit (64 KiB) hides nothing either: a run
// the server refuses is halved until it fits
// (activities.TestNoticesShrinkToWhatTheServerTakes shows the halving).
func TestFloodNoticeRunsFillSyncKeys(t *testing.T) {
	const serverLimit = 16 << 10 // devstack's frontend.searchAttributesSizeOfValueLimit
	for _, keysBytes := range []string{"", "65536"} {
		t.Run("keys_bytes="+keysBytes, func(t *testing.T) {
			vars := map[string]string{}
			if keysBytes != "" {
				vars["SYNCBRIDGE_FLOOD_NOTICE_KEYS_BYTES"] = keysBytes
			}
			p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, floodMode.with(vars))
			prefix := strings.Repeat("x", 100-len("clinic00-dev0-000000")) + "-"
			msgs := generate(syncevent.GenOptions{Count: 1000, DistinctKeys: 650, ChangedRate: 0.8, BadRate: 0.05, Seed: 5, KeyPrefix: prefix})
			ids := p.publish(msgs)
			p.worker(Options{})
			p.waitDrained(len(msgs), 2*time.Minute)
			p.waitFindable(time.Minute)
			p.verify(expect(t, msgs, ids))

			q := fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s'", contract.FloodNoticeWorkflowName, p.env.TaskQueue)
			resp, err := p.env.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			largest := 0
			for _, e := range resp.GetExecutions() {
				size := len(e.GetSearchAttributes().GetIndexedFields()[searchattr.Keys.GetName()].GetData())
				largest = max(largest, size)
			}
			t.Logf("%d notice runs, the largest SyncKeys value %d bytes", len(resp.GetExecutions()), largest)
			if largest > serverLimit || largest <= 4096 {
				t.Errorf("largest SyncKeys value %d bytes: want runs over 4096 bytes (40 keys) and within the server's %d-byte limit", largest, serverLimit)
			}
		})
	}
}

// The database slows down mid-drain (100 ms added to every request): flood
// groups shrink instead of piling up connections, the pool cap holds, no
// statement fails (nothing leaves the bulk path), and the rate comes back
// once the latency goes.
func TestFloodPaceUnderDatabaseLatency(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, floodMode.with(map[string]string{
		"SYNCBRIDGE_FLOOD_SLOW_COMMIT": "150ms", "POLARDB_MAX_CONNS": "4", "SYNCBRIDGE_POLLERS": "2",
	}))
	proxy := p.proxyDatabase()
	msgs := generate(syncevent.GenOptions{Count: 6000, DistinctKeys: 5000, ChangedRate: 0.2, BadRate: 0.01, Seed: 17, KeyPrefix: "pace-"})
	ids := p.publish(msgs)
	w := p.worker(Options{})
	gauge := func() float64 { return metricSum(t, w.metricsAddr, "syncbridge_flood_group_batches") }
	const full = 16 // SYNCBRIDGE_FLOOD_BATCHES' default
	testwait.Until(t, 2*time.Minute, "the drain under way", func() bool { return countRows(t, p.env.DB) >= 500 })

	proxy.SetLatency(100 * time.Millisecond)
	testwait.Until(t, 30*time.Second, "groups to shrink", func() bool { return gauge() <= full/4 })
	slowFrom, slowRows := time.Now(), countRows(t, p.env.DB)
	time.Sleep(4 * time.Second)
	slowRate := float64(countRows(t, p.env.DB)-slowRows) / time.Since(slowFrom).Seconds()
	shrunk := gauge()

	proxy.SetLatency(0)
	fastFrom, fastRows := time.Now(), countRows(t, p.env.DB)
	testwait.Until(t, 30*time.Second, "groups to grow back", func() bool { return gauge() == full || countRows(t, p.env.DB) >= 5000 })
	time.Sleep(time.Second)
	fastRate := float64(countRows(t, p.env.DB)-fastRows) / time.Since(fastFrom).Seconds()
	t.Logf("group of %d consume calls, %.0f under latency (%.0f rows/s), back to %.0f (%.0f rows/s)", full, shrunk, slowRate, gauge(), fastRate)
	if fastRate < 3*slowRate {
		t.Errorf("the rate did not come back: %.0f rows/s after the latency, %.0f during", fastRate, slowRate)
	}

	p.waitDrained(len(msgs), 5*time.Minute)
	p.verify(expect(t, msgs, ids))
	if _, most := proxy.Conns(); most > 4 {
		t.Errorf("%d database connections at once, the pool cap is 4", most)
	}
	if n := metricLabelled(t, w.metricsAddr, "syncbridge_flood_messages_total", `path="workflow"`); n != 0 {
		t.Errorf("%.0f messages left the bulk path (a failed or timed-out statement?)", n)
	}
}

// SYNCBRIDGE_FLOOD_ROWS_PER_SEC holds within 10% over a minute.
func TestFloodRowsPerSecondHolds(t *testing.T) {
	const perSec = 100
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, floodMode.with(map[string]string{"SYNCBRIDGE_FLOOD_ROWS_PER_SEC": "100"}))
	msgs := generate(syncevent.GenOptions{Count: 80 * perSec, Seed: 19, KeyPrefix: "paced-"})
	p.publish(msgs)
	w := p.worker(Options{})
	bulk := func() float64 {
		return metricLabelled(t, w.metricsAddr, "syncbridge_flood_messages_total", `path="bulk"`)
	}
	// Past the limiter's first burst (a second's worth).
	testwait.Until(t, time.Minute, "the first bulk commits", func() bool { return bulk() >= 2*perSec })
	from, n0 := time.Now(), bulk()
	time.Sleep(time.Minute)
	rate := (bulk() - n0) / time.Since(from).Seconds()
	t.Logf("%.1f rows/s over a minute, limit %d", rate, perSec)
	if rate < 0.9*perSec || rate > 1.1*perSec {
		t.Fatalf("%.1f rows/s over a minute, want %d within 10%%", rate, perSec)
	}
}
