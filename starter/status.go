package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// `starter status` answers "what needs a person?" in one place. Before it,
// an operator combined the Web UI filter, `quarantine list` and `conflicts
// list`, and still missed keyless quarantines (they have no workflow, so no
// search attribute) and stuck records (running, so no outcome yet).

type statusFlags struct {
	stuckAfter, window time.Duration
	limit              int
	readyz             []string
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runStatus(ctx context.Context, e *env, args []string) int {
	fs := newFlags("status", "status [--stuck-after 15m] [--window 5m] [--limit 20] [--readyz URL]...", `
What needs a person, in one view: drain rate and records in flight, records
running longer than --stuck-after with the activity each waits on (attempt
and last error), open conflicts, quarantined messages by reason (keyless ones
included: they have no workflow and do not show in the Web UI), the poller
workflows, and the workers polling the task queue. With --readyz (repeatable,
e.g. http://worker-1:9090/readyz) it also asks those workers' readiness.
The broker's own backlog is in the RocketMQ console. Exit 0 when the view
was built, whatever it shows.`)
	var f statusFlags
	fs.DurationVar(&f.stuckAfter, "stuck-after", workerapp.DefaultStuckAfter, "a running record older than this `DURATION` is listed as stuck")
	fs.DurationVar(&f.window, "window", 5*time.Minute, "drain rate over the last `DURATION`")
	fs.IntVar(&f.limit, "limit", 20, "list at most `N` stuck records")
	var readyz stringsFlag
	fs.Var(&readyz, "readyz", "a worker's /readyz `URL` to check (repeatable)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	if f.stuckAfter <= 0 || f.window <= 0 || f.limit <= 0 {
		return usageError(e, fs, "--stuck-after, --window and --limit must be > 0")
	}
	f.readyz = readyz
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	now := time.Now()
	tq := escapeQuery(cfg.Temporal.TaskQueue)
	count := func(q string) (int64, error) {
		resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
		return resp.GetCount(), err
	}
	records := fmt.Sprintf("%s AND TaskQueue = '%s'", contract.RecordTypesQuery, tq)

	// Drain.
	running, err := count(records + " AND ExecutionStatus = 'Running'")
	if err != nil {
		return e.fail("count running records: %v", err)
	}
	closed, err := count(records + " AND CloseTime >= '" + now.Add(-f.window).UTC().Format(time.RFC3339Nano) + "'")
	if err != nil {
		return e.fail("count closed records: %v", err)
	}
	stored, err := st.RecordsStoredSince(ctx, now.Add(-f.window))
	if err != nil {
		return e.fail("%v", err)
	}
	secs := f.window.Seconds()
	e.printf("drain (last %s)\n", f.window)
	e.printf("  record workflows completed  %d (%.2f/s)\n", closed, float64(closed)/secs)
	e.printf("  new records stored          %d (%.2f/s)\n", stored, float64(stored)/secs)
	e.printf("  records in flight           %d (polling pauses at SYNCBRIDGE_MAX_INFLIGHT %d)\n", running, cfg.Pipeline.MaxInFlight)
	e.printf("  broker backlog              see the consumer group's accumulation in the RocketMQ console\n")

	// Stuck records and what they wait on.
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: int32(f.limit), Query: workerapp.StuckQuery(cfg.Temporal.TaskQueue, now, f.stuckAfter),
	})
	if err != nil {
		return e.fail("list stuck records: %v", err)
	}
	nStuck, err := count(workerapp.StuckQuery(cfg.Temporal.TaskQueue, now, f.stuckAfter))
	if err != nil {
		return e.fail("count stuck records: %v", err)
	}
	e.printf("\nrecords running longer than %s: %d\n", f.stuckAfter, nStuck)
	if len(resp.GetExecutions()) > 0 {
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  KEY\tRUNNING FOR\tWAITS ON\tATTEMPT\tLAST ERROR\n")
		for _, x := range resp.GetExecutions() {
			id := x.GetExecution().GetWorkflowId()
			key := contract.KeyFromWorkflowID(cfg.Pipeline.WorkflowIDPrefix, id)
			waits, attempt, lastErr := "a workflow task (no worker?)", "-", "-"
			d, err := tc.DescribeWorkflowExecution(ctx, id, x.GetExecution().GetRunId())
			if err != nil {
				waits = "describe failed: " + oneLine(err.Error())
			}
			for _, pa := range d.GetPendingActivities() {
				waits = pa.GetActivityType().GetName() + waitsOn(pa.GetActivityType().GetName())
				attempt = fmt.Sprint(pa.GetAttempt())
				if pa.GetLastFailure() != nil {
					lastErr = oneLine(pa.GetLastFailure().GetMessage())
				}
				break
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", key, now.Sub(x.GetStartTime().AsTime()).Round(time.Second), waits, attempt, lastErr)
		}
		tw.Flush()
		if nStuck > int64(len(resp.GetExecutions())) {
			e.printf("  (first %d; `starter reconcile --dry-run --stuck-after %s` lists all)\n", len(resp.GetExecutions()), f.stuckAfter)
		}
	}

	// Conflicts and quarantine: the work waiting for a person.
	nConf, confKeys, oldestConf, err := st.OpenConflicts(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	e.printf("\nopen conflicts: %d", nConf)
	if nConf > 0 {
		e.printf(" over %d keys, oldest received %s (starter conflicts list; conflicts show KEY)", confKeys, fmtTime(oldestConf))
	}
	e.printf("\n")
	qs, err := st.OpenQuarantine(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	var nQ int64
	for _, q := range qs {
		nQ += q.Count
	}
	e.printf("\nquarantined, waiting for a decision: %d\n", nQ)
	if len(qs) > 0 {
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  REASON\tKEYLESS\tCOUNT\tOLDEST\n")
		for _, q := range qs {
			keyless := "no"
			if q.Keyless {
				keyless = "yes (no workflow)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", q.Reason, keyless, q.Count, fmtTime(q.Oldest))
		}
		tw.Flush()
		e.printf("  (starter quarantine list; quarantine show ID)\n")
	}
	// Flood mode's conflicts and quarantines not yet shown in the Web UI.
	pending, overdue, err := st.PendingNotices(ctx, time.Now())
	if err != nil {
		return e.fail("%v", err)
	}
	if pending > 0 {
		e.printf("\nnot yet in the Web UI (flood mode record notices): %d, %d past their lease (a sweep starts them)\n", pending, overdue)
	}

	// Pollers.
	ids, err := allPollers(ctx, tc, cfg)
	if err != nil {
		return e.fail("%v", err)
	}
	e.printf("\npollers (%d configured)\n", cfg.Pipeline.Pollers)
	for _, id := range ids {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			e.printf("  %s  not started\n", id)
			continue
		case err != nil:
			return e.fail("describe %s: %v", id, err)
		}
		state := statusName(d.GetWorkflowExecutionInfo().GetStatus())
		for _, pa := range d.GetPendingActivities() {
			state += fmt.Sprintf(", poll attempt %d", pa.GetAttempt())
			if pa.GetLastHeartbeatTime() != nil {
				state += ", last heartbeat " + now.Sub(pa.GetLastHeartbeatTime().AsTime()).Round(time.Second).String() + " ago"
			}
			if pa.GetLastFailure() != nil {
				state += ", last failure: " + oneLine(pa.GetLastFailure().GetMessage())
			}
		}
		e.printf("  %s  %s\n", id, state)
	}

	// Workers.
	e.printf("\nworkers polling task queue %s\n", cfg.Temporal.TaskQueue)
	workers := map[string]time.Time{}
	for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
		d, err := tc.DescribeTaskQueue(ctx, cfg.Temporal.TaskQueue, typ)
		if err != nil {
			return e.fail("describe task queue: %v", err)
		}
		for _, p := range d.GetPollers() {
			noteWorker(workers, p)
		}
	}
	if len(workers) == 0 {
		e.printf("  none: no worker has polled recently; records wait until one runs\n")
	}
	names := make([]string, 0, len(workers))
	for id := range workers {
		names = append(names, id)
	}
	sort.Strings(names)
	for _, id := range names {
		e.printf("  %s  last poll %s ago\n", id, now.Sub(workers[id]).Round(time.Second))
	}
	for _, u := range f.readyz {
		e.printf("  %s  %s\n", u, readiness(ctx, u))
	}
	return exitOK
}

func noteWorker(m map[string]time.Time, p *taskqueuepb.PollerInfo) {
	t := p.GetLastAccessTime().AsTime()
	if t.After(m[p.GetIdentity()]) {
		m[p.GetIdentity()] = t
	}
}

// waitsOn names the dependency an activity of the record path waits on.
func waitsOn(activity string) string {
	switch activity {
	case "Insert", "Quarantine":
		return " (database)"
	case "Ack":
		return " (broker)"
	}
	return ""
}

// readiness asks one worker's /readyz and summarises the answer.
func readiness(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "bad URL: " + err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable: " + oneLine(err.Error())
	}
	defer resp.Body.Close()
	var r workerapp.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Sprintf("HTTP %d, not a /readyz answer", resp.StatusCode)
	}
	if r.Ready {
		return "ready"
	}
	var parts []string
	for _, name := range r.Failing {
		parts = append(parts, name+": "+oneLine(r.Dependencies[name].Error))
	}
	return "NOT READY (" + strings.Join(parts, "; ") + ")"
}
