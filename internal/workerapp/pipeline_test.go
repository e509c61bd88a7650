package workerapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/histcost"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// The drain: 1,000 messages over 800 keys (200 republished, a
// quarter of those changed) with duplicate delivery on. Afterwards every
// key has exactly one row, every changed version is a recorded conflict,
// the broker holds nothing unacked and no workflow failed.
func TestDrainWithDuplicateDelivery(t *testing.T) { drainWithDuplicateDelivery(t, defaultMode) }

func drainWithDuplicateDelivery(t *testing.T, m mode) {
	p := newPipe(t, mqemu.Config{
		// Long enough that redeliveries come only from the injected
		// duplicates, even under the race detector on a loaded machine.
		InvisibleTime: 2 * time.Minute,
		Faults:        mqemu.Faults{DuplicateRate: 0.2},
		Seed:          7,
	}, m.with(map[string]string{"SYNCBRIDGE_POLLERS": "2"}))
	msgs := generate(syncevent.GenOptions{Count: 1000, DistinctKeys: 800, ChangedRate: 0.25, Seed: 42, KeyPrefix: "drain-"})
	ids := p.publish(msgs)
	w := p.worker(Options{})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
	p.waitFindable(time.Minute)

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
	if m.flood {
		return // clean records have no workflow to replay
	}
	p.replayLive(contract.RecordWorkflowID(p.prefix, msgs[0].Key), "record_v2_inserted.json")
	cfg := p.config()
	p.replayLive(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "poller_lean_path.json")
}

// Every kind of bad input ends in sync_quarantine with its reason, is
// acked, and is delivered once: no retry storm.
func TestPoisonMessagesAreQuarantinedOnce(t *testing.T) { poisonQuarantinedOnce(t, defaultMode) }

func poisonQuarantinedOnce(t *testing.T, md mode) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, md.with(nil))
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
	p.waitFindable(time.Minute)
	if md.flood {
		// The quarantines were stored and acked in bulk; a notice run
		// shows them (activities.Notices).
		q := fmt.Sprintf("WorkflowType = '%s' AND SyncOutcome = 'quarantined'", contract.FloodNoticeWorkflowName)
		for id := range p.workflowIDs(q) {
			p.replayLive(id, "flood_notice.json")
			break
		}
		return
	}
	for _, m := range msgs {
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) && m.Key != "" {
			p.replayLive(contract.RecordWorkflowID(p.prefix, m.Key), "record_v2_quarantined.json")
			break
		}
	}
}

// The database goes away for 12 s mid-drain. Records wait as pending
// activities showing their last error; when it is back, nothing is lost
// and nothing doubled.
func TestDatabaseOutageMidDrain(t *testing.T) { databaseOutageMidDrain(t, defaultMode) }

func databaseOutageMidDrain(t *testing.T, m mode) {
	// Flood mode drains these 400 messages in well under a second: paced,
	// the cut lands mid-drain.
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, m.with(map[string]string{"SYNCBRIDGE_FLOOD_ROWS_PER_SEC": "50"}))
	proxy := p.proxyDatabase()

	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 350, ChangedRate: 0.3, BadRate: 0.02, Seed: 11, KeyPrefix: "outage-"})
	ids := p.publish(msgs)
	p.worker(Options{})
	testwait.Until(t, 2*time.Minute, "first rows", func() bool { return countRows(t, p.env.DB) >= 40 })

	proxy.Cut()
	cutAt := time.Now()
	// During the outage, stuck records are visible as pending Insert
	// activities with their last failure and a growing attempt count.
	testwait.Until(t, 60*time.Second, "a record retrying its insert", func() bool {
		return p.stuckInsert() != ""
	})
	t.Logf("stuck record seen: %s", p.stuckInsert())
	if d := 12*time.Second - time.Since(cutAt); d > 0 {
		time.Sleep(d)
	}
	proxy.Restore()

	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
	p.waitFindable(2 * time.Minute)
}

// proxyDatabase puts a TCP proxy the test can cut between the workers and
// the database, with short driver timeouts.
func (p *pipe) proxyDatabase() *tcpproxy.Proxy {
	p.t.Helper()
	proxy, dsn := proxiedDSN(p.t, p.env.DSN)
	p.vars["POLARDB_DSN"] = dsn
	return proxy
}

// proxiedDSN starts a cuttable proxy to dsn's server and returns it with
// a DSN through it whose driver timeouts are short enough that a cut
// shows within seconds.
func proxiedDSN(t testing.TB, dsn string) (*tcpproxy.Proxy, string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.Start(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	cfg.Addr = proxy.Addr()
	cfg.Timeout = 2 * time.Second
	cfg.ReadTimeout = 5 * time.Second
	cfg.WriteTimeout = 5 * time.Second
	return proxy, cfg.FormatDSN()
}

// A record whose insert keeps failing does not hide inside a workflow
// task: after its few local attempts it is a pending Insert activity, with
// its attempt count and last error, within a minute; once the database is
// back it completes, exactly once.
func TestStuckInsertShowsAsPendingActivity(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	proxy := p.proxyDatabase()
	p.worker(Options{})
	proxy.Cut()
	msgs := generate(syncevent.GenOptions{Count: 1, Seed: 23, KeyPrefix: "stuck-"})
	ids := p.publish(msgs)
	cutAt := time.Now()
	testwait.Until(t, time.Minute, "the record as a pending Insert activity with its last error", func() bool {
		return p.stuckInsert() != ""
	})
	t.Logf("after %s: %s", time.Since(cutAt).Round(time.Second), p.stuckInsert())
	proxy.Restore()
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))
}

// stuckInsert returns a description of a running record whose Insert
// activity has failed at least once, or "".
func (p *pipe) stuckInsert() string {
	ctx := context.Background()
	resp, err := p.env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query:    contract.RecordTypesQuery + " AND ExecutionStatus = 'Running' AND TaskQueue = '" + p.env.TaskQueue + "'",
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
	testwait.Until(t, 2*time.Minute, "first rows", func() bool { return countRows(t, p.env.DB) >= 40 })
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
func TestRedeliveryWhileRecordRuns(t *testing.T) { redeliveryWhileRecordRuns(t, defaultMode) }

func redeliveryWhileRecordRuns(t *testing.T, md mode) {
	// Signalled at once, not parked (TestRedeliveryParkedUntilRecordCloses).
	p := newPipe(t, mqemu.Config{InvisibleTime: time.Second}, md.with(map[string]string{"SYNCBRIDGE_PARK_FOR": "0s"}))
	if md.flood {
		// Flood mode bulk-commits before any workflow runs; a commit
		// that cannot get the table lock within a second fails, which
		// makes its message an exception with a record workflow of its
		// own: the redeliveries must then reach that workflow.
		p.setDSNParam("lock_wait_timeout", "1")
	}
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
	// In flood mode the records start only once a bulk commit has given
	// up on the lock, and the poller gathers more groups meanwhile: count
	// the redeliveries from the moment a record runs.
	testwait.Until(t, time.Minute, "a record running", func() bool { return p.count("ExecutionStatus = 'Running'") > 0 })
	base := p.env.MQ.Stats(p.env.Topic, p.env.Group).Delivered
	testwait.Until(t, time.Minute, "redeliveries during the insert", func() bool {
		return p.env.MQ.Stats(p.env.Topic, p.env.Group).Delivered >= base+2*len(msgs)
	})
	if _, err := conn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	p.waitDrained(len(msgs), 2*time.Minute)
	p.verify(expect(t, msgs, ids))

	// At least one workflow took a redelivery by signal while running (its
	// first delivery is its input).
	signalled, richest, most := 0, "", 0
	for _, m := range msgs {
		it := p.env.Client.GetWorkflowHistory(context.Background(), contract.RecordWorkflowID(p.prefix, m.Key), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		n := 0
		for it.HasNext() {
			ev, err := it.Next()
			var notFound *serviceerror.NotFound
			if md.flood && errors.As(err, &notFound) {
				break // committed in bulk: no workflow
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				n++
			}
		}
		if n > 0 {
			signalled++
		}
		if n > most {
			richest, most = contract.RecordWorkflowID(p.prefix, m.Key), n
		}
	}
	if signalled == 0 {
		t.Fatal("no running workflow received a redelivery")
	}
	if md.flood {
		p.replayLive(richest, "")
		return
	}
	p.replayLive(richest, "record_v2_redelivered.json")
}

// A redelivery for a key whose record is running waits, unacked, for the
// run to close and is then settled as a duplicate without a workflow: no
// signal, no second local-activity batch. Nothing lost or doubled.
func TestRedeliveryParkedUntilRecordCloses(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: time.Second}, map[string]string{"SYNCBRIDGE_PARK_FOR": "1m"})
	w := p.worker(Options{})
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	// Hold the runs inside their insert while the broker redelivers.
	conn, err := p.env.DB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "LOCK TABLES patient_records WRITE"); err != nil {
		t.Fatal(err)
	}
	msgs := generate(syncevent.GenOptions{Count: 4, Seed: 19, KeyPrefix: "park-"})
	ids := p.publish(msgs)
	w = p.worker(Options{})
	testwait.Until(t, time.Minute, "a redelivery parked while the records run", func() bool {
		return metricSum(t, w.metricsAddr, "syncbridge_redeliveries_parked_total") > 0
	})
	if _, err := conn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	p.waitDrained(len(msgs), 2*time.Minute)
	p.verify(expect(t, msgs, ids))
	if n := metricSum(t, w.metricsAddr, "syncbridge_redeliveries_signalled_total"); n != 0 {
		t.Errorf("%v redeliveries signalled although parking was on", n)
	}
	for _, m := range msgs {
		for _, ev := range p.history(contract.RecordWorkflowID(p.prefix, m.Key)) {
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				t.Errorf("record %s was signalled", m.Key)
			}
		}
	}
	if n := p.count(""); n != int64(len(msgs)) {
		t.Errorf("%d record runs for %d keys", n, len(msgs))
	}
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
// work is spread over both. A record runs on the worker whose poll activity
// handed it over (eager start), and the first worker up takes every poll
// activity scheduled before the second polls; one-second poll runs hand
// the poll activities out again and again through matching, which
// alternates between the workers' waiting polls.
func TestTwoWorkersShareTheDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute, Faults: mqemu.Faults{DuplicateRate: 0.1}, Seed: 13},
		map[string]string{"SYNCBRIDGE_POLLERS": "4"})
	msgs := generate(syncevent.GenOptions{Count: 400, DistinctKeys: 300, ChangedRate: 0.3, BadRate: 0.03, Seed: 21, KeyPrefix: "fleet-"})
	ids := p.publish(msgs)
	a := p.worker(Options{PollRunFor: time.Second})
	b := p.worker(Options{PollRunFor: time.Second})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))
	for i, w := range []*running{a, b} {
		n := metricSum(t, w.metricsAddr, "syncbridge_records_total")
		t.Logf("worker %d committed %.0f records", i, n)
		if n == 0 {
			t.Errorf("worker %d committed no record: work was not spread", i)
		}
	}
}

// metricSum adds up every sample of a metric in a /metrics page.
func metricSum(t testing.TB, addr, name string) float64 {
	t.Helper()
	return metricLabelled(t, addr, name, "")
}

// metricLabelled sums the series of a metric whose labels contain label.
func metricLabelled(t testing.TB, addr, name, label string) float64 {
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
		if labels, _, _ := strings.Cut(strings.TrimPrefix(line, name), " "); !strings.Contains(labels, label) {
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

// The lean record path's cost, counted from the real histories: every
// cleanly inserted record costs at most 8 history events and 2 billable
// actions (start + one local-activity batch), and no search-attribute
// upsert.
func TestLeanRecordCostFromHistories(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	msgs := generate(syncevent.GenOptions{Count: 60, Seed: 17, KeyPrefix: "cost-"})
	ids := p.publish(msgs)
	p.worker(Options{})
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))
	var total histcost.Cost
	for _, m := range msgs {
		evs := p.history(contract.RecordWorkflowID(p.prefix, m.Key))
		c := histcost.Of(evs)
		if evs[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName() != contract.RecordWorkflowV2Name {
			t.Fatalf("key %s ran as %s", m.Key, evs[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName())
		}
		if c.Events > 8 || c.Actions > 2 {
			t.Errorf("record %s costs %d events and %d actions, want at most 8 and 2", m.Key, c.Events, c.Actions)
		}
		for _, ev := range evs {
			if ev.GetEventType() == enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES {
				t.Errorf("record %s upserted search attributes for a clean outcome", m.Key)
			}
		}
		total = total.Add(c)
	}
	t.Logf("%d records: %.2f events and %.2f actions per record", len(msgs),
		float64(total.Events)/float64(len(msgs)), float64(total.Actions)/float64(len(msgs)))
}

// Redeliveries of completed keys are settled by the poller without a
// workflow when they are duplicates; a changed version (conflict) or bad
// input for such a key gets a new run of its own, so the Web UI's
// SyncOutcome filter finds every conflict and quarantine whatever path met
// it.
func TestExceptionsOnCompletedKeysAreFindable(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	p.worker(Options{})
	first := generate(syncevent.GenOptions{Count: 3, Seed: 31, KeyPrefix: "done-"})
	ids := p.publish(first)
	p.waitDrained(len(first), 2*time.Minute)

	dup, changed, bad := first[0], first[1], first[2]
	changed.Body = []byte(strings.Replace(string(changed.Body), `"patientData":{`, `"patientData":{"notes":"amended at the clinic",`, 1))
	if strings.Contains(string(first[1].Body), `"notes"`) {
		changed.Body = []byte(strings.Replace(string(first[1].Body), `"notes":"`, `"notes":"amended: `, 1))
	}
	bad.Body = []byte(`{"patientData":`)
	later := []syncevent.OutMessage{dup, changed, bad}
	ids = append(ids, p.publish(later)...)
	p.waitDrained(len(first)+len(later), 2*time.Minute)

	e := expect(t, first, ids[:3])
	ev, err := syncevent.Parse(changed.Key, ids[4], changed.Body)
	if err != nil {
		t.Fatalf("changed version must be valid: %v", err)
	}
	e.hashes[changed.Key][ev.Hash] = true
	e.quarantine[ids[5]] = syncevent.ReasonBadJSON
	p.verify(e)

	testwait.Until(t, 30*time.Second, "the conflict and the quarantine in visibility", func() bool {
		return p.count("SyncOutcome = 'conflict'") == 1 && p.count("SyncOutcome = 'quarantined'") == 1
	})
	if n := p.count("WorkflowId = '" + contract.RecordWorkflowID(p.prefix, dup.Key) + "'"); n != 1 {
		t.Fatalf("the duplicate of a completed key started a workflow run (%d runs)", n)
	}
}
