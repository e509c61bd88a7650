package workerapp

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
)

// The drain: 1,000 messages over 800 keys (200 republished, a
// quarter of those changed) with duplicate delivery on. Afterwards every
// key has exactly one row, every changed version is a recorded conflict,
// the broker holds nothing unacked and no workflow failed.
func TestDrainWithDuplicateDelivery(t *testing.T) {
	p := newPipe(t, mqemu.Config{
		// Long enough that redeliveries come only from the injected
		// duplicates, even under the race detector on a loaded machine.
		InvisibleTime: 2 * time.Minute,
		Faults:        mqemu.Faults{DuplicateRate: 0.2},
		Seed:          7,
	}, map[string]string{"SYNCBRIDGE_POLLERS": "2"})
	msgs := generate(syncevent.GenOptions{Count: 1000, DistinctKeys: 800, ChangedRate: 0.25, Seed: 42, KeyPrefix: "drain-"})
	ids := p.publish(msgs)
	w := p.worker(Options{})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))

	st := p.env.MQ.Stats(p.env.Topic, p.env.Group)
	if st.Delivered <= st.Published {
		t.Fatalf("duplicate delivery was not exercised: %+v", st)
	}
	var conflicts int
	if err := p.env.DB.QueryRow("SELECT COUNT(*) FROM sync_conflicts").Scan(&conflicts); err != nil {
		t.Fatal(err)
	}
	_, _, changedN, _ := syncevent.GenCounts(syncevent.GenOptions{Count: 1000, DistinctKeys: 800, ChangedRate: 0.25})
	if conflicts == 0 || conflicts > changedN {
		t.Fatalf("%d conflicts recorded, generator made %d changed versions", conflicts, changedN)
	}

	// The pipeline's own metrics are served next to the SDK's.
	resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"syncbridge_messages_polled", "syncbridge_records", "syncbridge_acked_handles", "temporal_"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if err := w.stop(); err != nil {
		t.Fatalf("worker stop: %v", err)
	}
	p.replayLive(contract.RecordWorkflowID(p.prefix, msgs[0].Key), "record_inserted.json")
	cfg := p.config()
	p.replayLive(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "poller.json")
}

// Every kind of bad input ends in sync_quarantine with its reason, is
// acked, and is delivered once: no retry storm.
func TestPoisonMessagesAreQuarantinedOnce(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	msgs := generate(syncevent.GenOptions{Count: 28, BadRate: 0.5, Seed: 3, KeyPrefix: "poison-"})
	reasons := map[string]bool{}
	for _, m := range msgs {
		if r, ok := strings.CutPrefix(m.Kind, syncevent.KindBadPrefix); ok {
			reasons[r] = true
		}
	}
	if len(reasons) < 5 {
		t.Fatalf("generator covered only %d bad kinds", len(reasons))
	}
	ids := p.publish(msgs)
	p.worker(Options{})
	p.waitDrained(len(msgs), 2*time.Minute)
	p.verify(expect(t, msgs, ids))
	if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Delivered != st.Published {
		t.Fatalf("messages were redelivered (retry storm?): %+v", st)
	}
	// Keyed poison messages are findable in the Web UI by outcome.
	keyedBad := 0
	for _, m := range msgs {
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) && m.Key != "" && !strings.Contains(m.Kind, "key") {
			keyedBad++
		}
	}
	waitFor(t, 30*time.Second, "quarantined outcome in visibility", func() bool {
		return p.count("SyncOutcome = 'quarantined'") >= int64(keyedBad)
	})
	for _, m := range msgs {
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) && m.Key != "" {
			p.replayLive(contract.RecordWorkflowID(p.prefix, m.Key), "record_quarantined.json")
			break
		}
	}
}

// The database goes away for 12 s mid-drain. Records wait as pending
// activities showing their last error; when it is back, nothing is lost
// and nothing doubled.
func TestDatabaseOutageMidDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	cfg, err := mysql.ParseDSN(p.env.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.Start(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg.Addr = proxy.Addr()
	cfg.Timeout = 2 * time.Second
	cfg.ReadTimeout = 5 * time.Second
	cfg.WriteTimeout = 5 * time.Second
	p.vars["POLARDB_DSN"] = cfg.FormatDSN()

	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 350, ChangedRate: 0.3, BadRate: 0.02, Seed: 11, KeyPrefix: "outage-"})
	ids := p.publish(msgs)
	p.worker(Options{})
	waitFor(t, 2*time.Minute, "first rows", func() bool { return countRows(t, p.env.DB) >= 40 })

	proxy.Cut()
	cutAt := time.Now()
	// During the outage, stuck records are visible as pending Insert
	// activities with their last failure and a growing attempt count.
	waitFor(t, 60*time.Second, "a record retrying its insert", func() bool {
		return p.stuckInsert() != ""
	})
	t.Logf("stuck record seen: %s", p.stuckInsert())
	if d := 12*time.Second - time.Since(cutAt); d > 0 {
		time.Sleep(d)
	}
	proxy.Restore()

	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
}

// stuckInsert returns a description of a running record whose Insert
// activity has failed at least once, or "".
func (p *pipe) stuckInsert() string {
	ctx := context.Background()
	resp, err := p.env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query:    "WorkflowType = '" + contract.RecordWorkflowName + "' AND ExecutionStatus = 'Running' AND TaskQueue = '" + p.env.TaskQueue + "'",
		PageSize: 20,
	})
	if err != nil {
		return ""
	}
	for _, e := range resp.GetExecutions() {
		d, err := p.env.Client.DescribeWorkflowExecution(ctx, e.GetExecution().GetWorkflowId(), "")
		if err != nil {
			continue
		}
		for _, pa := range d.GetPendingActivities() {
			// The failure text is encrypted; an operator with the key reads it.
			msg, ok := codec.FailureMessage(p.env.Codec, pa.GetLastFailure())
			if pa.GetActivityType().GetName() == "Insert" && pa.GetAttempt() > 1 && ok && msg != "" {
				return e.GetExecution().GetWorkflowId() + ": attempt " + strconv.Itoa(int(pa.GetAttempt())) + ", last error: " + msg
			}
		}
	}
	return ""
}

// A worker is stopped mid-drain and a new one takes over.
func TestWorkerRestartMidDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 320, ChangedRate: 0.3, Seed: 5, KeyPrefix: "restart-"})
	ids := p.publish(msgs)
	first := p.worker(Options{})
	waitFor(t, 2*time.Minute, "first rows", func() bool { return countRows(t, p.env.DB) >= 40 })
	if err := first.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	mid := countRows(t, p.env.DB)
	if mid >= 320 {
		t.Skipf("drain finished before the restart (%d rows); nothing to prove", mid)
	}
	t.Logf("stopped first worker at %d rows", mid)
	p.worker(Options{})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
}

// The invisibility time is shorter than the insert (the table is locked
// for a while): the broker redelivers with new handles while the record
// workflows run; they take the new handles and ack them.
func TestRedeliveryWhileRecordRuns(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: time.Second}, nil)
	// Create the schema first, then hold a write lock on the table.
	w := p.worker(Options{})
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	lockDB, err := sql.Open("mysql", p.env.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer lockDB.Close()
	conn, err := lockDB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "LOCK TABLES patient_records WRITE"); err != nil {
		t.Fatal(err)
	}
	msgs := generate(syncevent.GenOptions{Count: 6, Seed: 9, KeyPrefix: "slow-"})
	ids := p.publish(msgs)
	p.worker(Options{})
	waitFor(t, time.Minute, "redeliveries during the insert", func() bool {
		return p.env.MQ.Stats(p.env.Topic, p.env.Group).Delivered >= 3*len(msgs)
	})
	if _, err := conn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	p.waitDrained(len(msgs), 2*time.Minute)
	p.verify(expect(t, msgs, ids))

	// At least one workflow took a redelivery by signal while running.
	signalled, richest, most := 0, "", 0
	for _, m := range msgs {
		it := p.env.Client.GetWorkflowHistory(context.Background(), contract.RecordWorkflowID(p.prefix, m.Key), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		n := 0
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				n++
			}
		}
		if n > 1 {
			signalled++
		}
		if n > most {
			richest, most = contract.RecordWorkflowID(p.prefix, m.Key), n
		}
	}
	if signalled == 0 {
		t.Fatal("no running workflow received a redelivery")
	}
	p.replayLive(richest, "record_redelivered.json")
}

func countRows(t *testing.T, db *sql.DB) int {
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM patient_records").Scan(&n); err != nil {
		// The table may not exist before the worker migrates.
		return 0
	}
	return n
}

// Two workers drain one topic together: no double processing, and the
// work is spread over both.
func TestTwoWorkersShareTheDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute, Faults: mqemu.Faults{DuplicateRate: 0.1}, Seed: 13},
		map[string]string{"SYNCBRIDGE_POLLERS": "4"})
	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 300, ChangedRate: 0.3, BadRate: 0.03, Seed: 21, KeyPrefix: "fleet-"})
	ids := p.publish(msgs)
	a := p.worker(Options{})
	b := p.worker(Options{})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
	for i, w := range []*running{a, b} {
		if n := metricSum(t, w.metricsAddr, "syncbridge_records_total"); n == 0 {
			t.Errorf("worker %d committed no record: work was not spread", i)
		}
	}
}

// metricSum adds up every sample of a metric in a /metrics page.
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
