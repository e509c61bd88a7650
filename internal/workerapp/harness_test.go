package workerapp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pipe is one test's pipeline: the shared Temporal server, a fresh
// database, its own emulator topic and task queue, and workers run through
// the production Run.
type pipe struct {
	t      testing.TB
	env    *testenv.Env
	vars   map[string]string
	prefix string
}

func newPipe(t testing.TB, mq mqemu.Config, vars map[string]string) *pipe {
	t.Helper()
	// Encrypted, as in production, unless the test refreshes the recorded
	// histories: those are replayed by the workflows package without a key.
	env := testenv.New(t, testenv.Options{MQ: mq, Plaintext: os.Getenv(UpdateHistoryEnv) == "1"})
	// Topic and workflow ID prefix unique per test: the Temporal server is
	// shared by the package, and poller IDs derive from topic and group.
	env.OwnTopic(t)
	p := &pipe{t: t, env: env, prefix: env.TaskQueue + "/"}
	overrides := map[string]string{"SYNCBRIDGE_METRICS_ADDR": "127.0.0.1:0"}
	for k, v := range vars {
		overrides[k] = v
	}
	p.vars = env.WorkerVars(p.prefix, overrides)
	t.Cleanup(p.stopPollers)
	return p
}

func (p *pipe) config() config.Config {
	p.t.Helper()
	cfg, err := config.Load(func(k string) string { return p.vars[k] })
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

// running is a worker started by pipe.worker.
type running struct {
	metricsAddr string
	// stop cancels Run's context and returns Run's error.
	stop func() error
}

// worker runs workerapp.Run until stop is called.
func (p *pipe) worker(o Options) *running {
	p.t.Helper()
	cfg := p.config()
	if o.Logger == nil {
		o.Logger = p.env.Logger
	}
	if o.PollRunFor == 0 {
		o.PollRunFor = 20 * time.Second
	}
	if o.DeadlockDetectionTimeout == 0 {
		o.DeadlockDetectionTimeout = 10 * time.Second
	}
	ready := make(chan string, 1)
	o.Ready = func(addr string) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, o) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		p.t.Fatalf("worker exited at start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		p.t.Fatal("worker not ready after 60s")
	}
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(StopTimeout + 30*time.Second):
				runErr = errors.New("worker did not stop")
			}
		}
		return runErr
	}
	p.t.Cleanup(func() { _ = stop() })
	return &running{metricsAddr: addr, stop: stop}
}

// stopPollers ends this test's poller workflows so they do not outlive it
// on the shared server.
func (p *pipe) stopPollers() {
	cfg := p.config()
	for i := 0; i < 8; i++ {
		_ = p.env.Client.TerminateWorkflow(context.Background(), contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i), "", "test over")
	}
}

func (p *pipe) publish(msgs []syncevent.OutMessage) []string {
	p.t.Helper()
	prod := mqclient.NewProducer(mqclient.Endpoint{URL: p.env.MQURL, AccessKey: p.env.AccessKey, SecretKey: p.env.SecretKey, InstanceID: p.env.InstanceID}, p.env.Topic)
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		id, err := prod.Publish(context.Background(), m.Key, m.Tag, m.Body)
		if err != nil {
			p.t.Fatalf("publish %d: %v", i, err)
		}
		ids[i] = id
	}
	return ids
}

// count runs a visibility count over this test's record workflows.
func (p *pipe) count(extra string) int64 {
	p.t.Helper()
	q := fmt.Sprintf("%s AND TaskQueue = '%s'", contract.RecordTypesQuery, p.env.TaskQueue)
	if extra != "" {
		q += " AND " + extra
	}
	resp, err := p.env.Client.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		p.t.Fatalf("count %q: %v", q, err)
	}
	return resp.GetCount()
}

// waitDrained waits until the broker holds nothing unacked for the group
// and no record workflow is running, then checks nothing was dead-lettered
// and no workflow failed.
func (p *pipe) waitDrained(published int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var st mqemu.GroupStats
	for {
		st = p.env.MQ.Stats(p.env.Topic, p.env.Group)
		// Visibility queries cost the embedded server real CPU: none until
		// the broker side is drained.
		if st.Published == published && st.Ready == 0 && st.InFlight == 0 && st.DeadLettered == 0 {
			// A run that failed or was terminated never completes: say
			// so at once rather than at the deadline.
			if n := p.count("ExecutionStatus != 'Completed' AND ExecutionStatus != 'Running'"); n != 0 {
				p.t.Fatalf("%d record workflows ended without completing", n)
			}
			// Visibility is written asynchronously: a run that has acked
			// its message may not be listed as Running yet, so "no run is
			// Running" is not enough; every listed run must have
			// completed.
			if p.count("ExecutionStatus != 'Completed'") == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not drained after %s: emulator %+v, running records %d", timeout, st, p.count("ExecutionStatus = 'Running'"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.t.Logf("drained: %+v, record workflows %d", st, p.count(""))
}

// generate is syncevent.Generate, invalid UTF-8 bodies included: the SDK's
// XML encoding replaces the bad bytes with U+FFFD before the message leaves
// the producer, and the parser refuses U+FFFD, so they are quarantined as
// invalid_utf8 as the generator says (the demo batch of worker -dev relies
// on it).
func generate(o syncevent.GenOptions) []syncevent.OutMessage {
	return syncevent.Generate(o)
}

// expectation is what the database must hold after a drain: for each key
// the set of distinct payload hashes (one is the row, the rest conflicts),
// and for each bad message its quarantine reason.
type expectation struct {
	hashes     map[string]map[string]bool
	quarantine map[string]string // message ID -> reason
}

func expect(t *testing.T, msgs []syncevent.OutMessage, ids []string) expectation {
	e := expectation{hashes: map[string]map[string]bool{}, quarantine: map[string]string{}}
	for i, m := range msgs {
		ev, err := syncevent.Parse(m.Key, ids[i], m.Body)
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) {
			if err == nil {
				t.Fatalf("generator's bad message %d parsed", i)
			}
			e.quarantine[ids[i]] = strings.TrimPrefix(m.Kind, syncevent.KindBadPrefix)
			continue
		}
		if err != nil {
			t.Fatalf("generator's good message %d: %v", i, err)
		}
		if e.hashes[m.Key] == nil {
			e.hashes[m.Key] = map[string]bool{}
		}
		e.hashes[m.Key][ev.Hash] = true
	}
	return e
}

// verify checks: exactly one row per key, every distinct version of a key
// kept (row or conflict, never both, never missing), every bad message
// quarantined once with its reason.
func (p *pipe) verify(e expectation) {
	p.t.Helper()
	ctx := context.Background()
	db := p.env.DB
	got := map[string]map[string]bool{}
	add := func(q string) {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			p.t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k, h string
			if err := rows.Scan(&k, &h); err != nil {
				p.t.Fatal(err)
			}
			if got[k] == nil {
				got[k] = map[string]bool{}
			}
			if got[k][h] {
				p.t.Fatalf("key %s version %s stored twice", k, h[:8])
			}
			got[k][h] = true
		}
		if err := rows.Err(); err != nil {
			p.t.Fatal(err)
		}
	}
	var rowsN, keysN int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(DISTINCT local_record_id) FROM patient_records").Scan(&rowsN, &keysN); err != nil {
		p.t.Fatal(err)
	}
	if rowsN != len(e.hashes) || keysN != len(e.hashes) {
		p.t.Fatalf("patient_records: %d rows over %d keys, want exactly one row for each of %d keys", rowsN, keysN, len(e.hashes))
	}
	add("SELECT local_record_id, payload_hash FROM patient_records")
	add("SELECT local_record_id, payload_hash FROM sync_conflicts")
	for k, want := range e.hashes {
		for h := range want {
			if !got[k][h] {
				p.t.Fatalf("key %s: version %s lost (neither row nor conflict)", k, h[:8])
			}
		}
		if len(got[k]) != len(want) {
			p.t.Fatalf("key %s: %d versions stored, %d published", k, len(got[k]), len(want))
		}
	}
	if len(got) != len(e.hashes) {
		p.t.Fatalf("%d keys stored, %d published", len(got), len(e.hashes))
	}
	qrows, err := db.QueryContext(ctx, "SELECT message_id, reason FROM sync_quarantine")
	if err != nil {
		p.t.Fatal(err)
	}
	defer qrows.Close()
	gotQ := map[string]string{}
	for qrows.Next() {
		var id, reason string
		if err := qrows.Scan(&id, &reason); err != nil {
			p.t.Fatal(err)
		}
		if _, dup := gotQ[id]; dup {
			p.t.Fatalf("message %s quarantined twice", id)
		}
		gotQ[id] = reason
	}
	for id, reason := range e.quarantine {
		if gotQ[id] != reason {
			p.t.Fatalf("message %s: quarantine reason %q, want %q", id, gotQ[id], reason)
		}
	}
	if len(gotQ) != len(e.quarantine) {
		p.t.Fatalf("%d quarantined, want %d", len(gotQ), len(e.quarantine))
	}
}

// waitFindable waits until every conflict and every keyed quarantine in the
// database is findable in the Web UI (a record run of its key with that
// SyncOutcome, whichever path stored it) and no record notice is pending,
// then checks nothing is hidden.
func (p *pipe) waitFindable(timeout time.Duration) {
	p.t.Helper()
	want := map[string][]string{
		"conflict":    p.keys("SELECT DISTINCT local_record_id FROM sync_conflicts"),
		"quarantined": p.keys("SELECT DISTINCT local_record_id FROM sync_quarantine WHERE local_record_id IS NOT NULL"),
	}
	var missing []string
	deadline := time.Now().Add(timeout)
	for {
		missing = missing[:0]
		for outcome, keys := range want {
			shown := p.shownKeys(outcome)
			for _, k := range keys {
				if !shown[k] {
					missing = append(missing, outcome+" "+k)
				}
			}
		}
		pending := p.pendingNotices()
		if len(missing) == 0 && pending == 0 {
			p.t.Logf("findable: %d conflict keys, %d quarantined keys", len(want["conflict"]), len(want["quarantined"]))
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("after %s, %d records needing a person are not findable by SyncOutcome (e.g. %v); %d notices pending",
				timeout, len(missing), missing[:min(5, len(missing))], pending)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// shownKeys returns the keys the Web UI shows with SyncOutcome = outcome:
// record runs of the key, and flood notices listing it in SyncKeys.
func (p *pipe) shownKeys(outcome string) map[string]bool {
	p.t.Helper()
	out := map[string]bool{}
	for id := range p.workflowIDs(contract.RecordTypesQuery + " AND SyncOutcome = '" + outcome + "'") {
		out[contract.KeyFromWorkflowID(p.prefix, id)] = true
	}
	q := fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s' AND SyncOutcome = '%s'", contract.FloodNoticeWorkflowName, p.env.TaskQueue, outcome)
	resp, err := p.env.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 1000})
	if err != nil {
		p.t.Fatalf("list %q: %v", q, err)
	}
	for _, e := range resp.GetExecutions() {
		var keys []string
		payload := e.GetSearchAttributes().GetIndexedFields()[searchattr.Keys.GetName()]
		if err := converter.GetDefaultDataConverter().FromPayload(payload, &keys); err != nil {
			p.t.Fatalf("SyncKeys of %s: %v", e.GetExecution().GetWorkflowId(), err)
		}
		for _, k := range keys {
			out[k] = true
		}
	}
	if len(resp.GetNextPageToken()) > 0 {
		p.t.Fatal("more than 1000 flood notices: page through them")
	}
	return out
}

// keys runs a one-column query over the test's database.
// pendingNotices counts flood mode's notices not delivered yet (the
// outbox, store.PendingNotices).
func (p *pipe) pendingNotices() int64 {
	p.t.Helper()
	n, _, err := store.New(p.env.DB).PendingNotices(context.Background(), time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// pendingNoticeSQL lists the keys of the outbox's notices, for keys.
const pendingNoticeSQL = `SELECT j.k FROM notice_batches,
	JSON_TABLE(records, '$[*]' COLUMNS (k VARCHAR(128) PATH '$.k')) AS j`

func (p *pipe) keys(q string) []string {
	p.t.Helper()
	rows, err := p.env.DB.Query(q)
	if err != nil {
		p.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// workflowIDs lists the IDs of this test's runs matching query, open or
// closed.
func (p *pipe) workflowIDs(extra string) map[string]bool {
	p.t.Helper()
	q := fmt.Sprintf("TaskQueue = '%s' AND %s", p.env.TaskQueue, extra)
	out := map[string]bool{}
	var token []byte
	for {
		resp, err := p.env.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 1000, NextPageToken: token})
		if err != nil {
			p.t.Fatalf("list %q: %v", q, err)
		}
		for _, e := range resp.GetExecutions() {
			out[e.GetExecution().GetWorkflowId()] = true
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}
