package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// `starter status` answers "what needs a person?" in one place. Before it,
// an operator combined the Web UI filter, `quarantine list` and `conflicts
// list`, and still missed keyless quarantines (they have no workflow, so no
// search attribute) and stuck records (running, so no outcome yet).

func statusCommand() *command {
	return &command{
		name:     "status",
		summary:  "what needs a person: drain, stuck records, conflicts, quarantine, pollers, workers",
		synopsis: "status [--stuck-after 15m] [--window 5m] [--limit 20] [--readyz URL]... [--json]",
		about: `
What needs a person, in one view: drain rate and records in flight, records
running longer than --stuck-after with the activity each waits on (attempt
and last error), open conflicts, quarantined messages by reason (keyless ones
included: they have no workflow and do not show in the Web UI), the poller
workflows, and the workers polling the task queue. With --readyz (repeatable,
e.g. http://worker-1:9090/readyz) it also asks those workers' readiness.
The broker's own backlog is in the RocketMQ console. Exit 0 when the view
was built, whatever it shows.`,
		needs:   needTemporal | needStore,
		listing: true,
		setup: func(fs *flags) runFunc {
			var f statusFlags
			fs.DurationVar(&f.stuckAfter, "stuck-after", workerapp.DefaultStuckAfter, "a running record older than this `DURATION` is listed as stuck")
			fs.DurationVar(&f.window, "window", 5*time.Minute, "drain rate over the last `DURATION`")
			fs.IntVar(&f.limit, "limit", 20, "list at most `N` stuck records")
			fs.Var(&f.readyz, "readyz", "a worker's /readyz `URL` to check (repeatable)")
			fs.check(func([]string) error {
				if f.stuckAfter <= 0 || f.window <= 0 || f.limit <= 0 {
					return usagef("--stuck-after, --window and --limit must be > 0")
				}
				return nil
			})
			return func(ctx context.Context, e *env, _ []string) error { return runStatus(ctx, e, f) }
		},
	}
}

type statusFlags struct {
	stuckAfter, window time.Duration
	limit              int
	readyz             stringsFlag
}

// statusReport is the view, as --json prints it.
type statusReport struct {
	At         time.Time        `json:"at"`
	Drain      drainView        `json:"drain"`
	Stuck      stuckView        `json:"stuck"`
	Conflicts  conflictCounts   `json:"conflicts"`
	Quarantine quarantineCounts `json:"quarantine"`
	// Notices are flood mode's record notices: conflicts and quarantines
	// not yet shown in the Web UI.
	Notices noticeCounts `json:"notices"`
	Pollers pollersView  `json:"pollers"`
	Workers workersView  `json:"workers"`
}

func runStatus(ctx context.Context, e *env, f statusFlags) error {
	r := statusReport{At: time.Now().UTC()}
	var err error
	if r.Drain, err = measureDrain(ctx, e, r.At, f.window); err != nil {
		return err
	}
	if r.Stuck, err = findStuckRecords(ctx, e, r.At, f.stuckAfter, f.limit); err != nil {
		return err
	}
	if r.Conflicts, err = countOpenConflicts(ctx, e); err != nil {
		return err
	}
	if r.Quarantine, err = countWaitingQuarantine(ctx, e); err != nil {
		return err
	}
	if r.Notices, err = countPendingNotices(ctx, e, r.At); err != nil {
		return err
	}
	if r.Pollers, err = describePollers(ctx, e); err != nil {
		return err
	}
	if r.Workers, err = findWorkers(ctx, e, f.readyz); err != nil {
		return err
	}
	return e.output(r, func() { r.print(e) })
}

type drainView struct {
	window             time.Duration
	WindowSeconds      float64 `json:"windowSeconds"`
	RecordsCompleted   int64   `json:"recordsCompleted"` // record workflows closed in the window
	CompletedPerSecond float64 `json:"completedPerSecond"`
	RecordsStored      int64   `json:"recordsStored"` // new rows in the window
	StoredPerSecond    float64 `json:"storedPerSecond"`
	RecordsInFlight    int64   `json:"recordsInFlight"`
	MaxInFlight        int     `json:"maxInFlight"` // SYNCBRIDGE_MAX_INFLIGHT: polling pauses there
}

func measureDrain(ctx context.Context, e *env, now time.Time, window time.Duration) (drainView, error) {
	d := drainView{window: window, WindowSeconds: window.Seconds(), MaxInFlight: e.cfg.Pipeline.MaxInFlight}
	var err error
	if d.RecordsInFlight, err = countRunningRecords(ctx, e.tc, e.cfg); err != nil {
		return d, fmt.Errorf("count running records: %w", err)
	}
	closed := fmt.Sprintf("%s AND TaskQueue = '%s' AND CloseTime >= '%s'", contract.RecordTypesQuery,
		escapeQuery(e.cfg.Temporal.TaskQueue), now.Add(-window).UTC().Format(time.RFC3339Nano))
	if d.RecordsCompleted, err = countWorkflows(ctx, e.tc, closed); err != nil {
		return d, fmt.Errorf("count closed records: %w", err)
	}
	if d.RecordsStored, err = e.st.RecordsStoredSince(ctx, now.Add(-window)); err != nil {
		return d, err
	}
	d.CompletedPerSecond = float64(d.RecordsCompleted) / d.WindowSeconds
	d.StoredPerSecond = float64(d.RecordsStored) / d.WindowSeconds
	return d, nil
}

type stuckView struct {
	after        time.Duration
	AfterSeconds float64 `json:"afterSeconds"`
	Count        int64   `json:"count"`   // all records running longer
	Records      []stuck `json:"records"` // the first --limit of them
}

type stuck struct {
	runningFor        time.Duration
	Key               string  `json:"key"`
	WorkflowID        string  `json:"workflowId"`
	RunID             string  `json:"runId"`
	RunningForSeconds float64 `json:"runningForSeconds"`
	// PendingActivity is empty while the record waits for a workflow
	// task: no worker has picked it up.
	PendingActivity string `json:"pendingActivity"`
	WaitsOn         string `json:"waitsOn"` // database, broker, workflow task, or "" for another activity
	Attempt         int32  `json:"attempt,omitempty"`
	LastError       string `json:"lastError,omitempty"`
	DescribeError   string `json:"describeError,omitempty"`
}

// findStuckRecords lists records running longer than after, with what each
// waits on.
func findStuckRecords(ctx context.Context, e *env, now time.Time, after time.Duration, limit int) (stuckView, error) {
	v := stuckView{after: after, AfterSeconds: after.Seconds(), Records: []stuck{}}
	q := workerapp.StuckQuery(e.cfg.Temporal.TaskQueue, now, after)
	resp, err := e.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: int32(limit), Query: q})
	if err != nil {
		return v, fmt.Errorf("list stuck records: %w", err)
	}
	if v.Count, err = countWorkflows(ctx, e.tc, q); err != nil {
		return v, fmt.Errorf("count stuck records: %w", err)
	}
	for _, x := range resp.GetExecutions() {
		s := stuck{
			WorkflowID: x.GetExecution().GetWorkflowId(), RunID: x.GetExecution().GetRunId(),
			runningFor: now.Sub(x.GetStartTime().AsTime()).Round(time.Second), WaitsOn: "workflow task",
		}
		s.RunningForSeconds = s.runningFor.Seconds()
		s.Key = contract.KeyFromWorkflowID(e.cfg.Pipeline.WorkflowIDPrefix, s.WorkflowID)
		d, err := e.tc.DescribeWorkflowExecution(ctx, s.WorkflowID, s.RunID)
		if err != nil {
			s.WaitsOn, s.DescribeError = "", oneLine(err.Error())
		}
		if pas := d.GetPendingActivities(); len(pas) > 0 {
			pa := pas[0]
			s.PendingActivity, s.Attempt = pa.GetActivityType().GetName(), pa.GetAttempt()
			s.WaitsOn = waitsOn(s.PendingActivity)
			if pa.GetLastFailure() != nil {
				s.LastError = oneLine(e.failureText(pa.GetLastFailure()))
			}
		}
		v.Records = append(v.Records, s)
	}
	return v, nil
}

// waitsOn names the dependency an activity of the record path waits on.
func waitsOn(activity string) string {
	switch activity {
	case "Insert", "Quarantine":
		return "database"
	case "Ack":
		return "broker"
	}
	return ""
}

type conflictCounts struct {
	Open             int64     `json:"open"`
	Keys             int64     `json:"keys"`
	OldestReceivedAt time.Time `json:"oldestReceivedAt,omitzero"`
}

func countOpenConflicts(ctx context.Context, e *env) (conflictCounts, error) {
	var c conflictCounts
	var err error
	c.Open, c.Keys, c.OldestReceivedAt, err = e.st.OpenConflicts(ctx)
	return c, err
}

type quarantineCounts struct {
	Waiting  int64              `json:"waiting"` // quarantined or replay_requested
	ByReason []quarantineReason `json:"byReason"`
}

type quarantineReason struct {
	Reason string `json:"reason"`
	// Keyless rows have no record workflow: the Web UI cannot show them.
	Keyless bool      `json:"keyless"`
	Count   int64     `json:"count"`
	Oldest  time.Time `json:"oldestQuarantinedAt"`
}

func countWaitingQuarantine(ctx context.Context, e *env) (quarantineCounts, error) {
	qs, err := e.st.OpenQuarantine(ctx)
	if err != nil {
		return quarantineCounts{}, err
	}
	c := quarantineCounts{ByReason: make([]quarantineReason, 0, len(qs))}
	for _, q := range qs {
		c.Waiting += q.Count
		c.ByReason = append(c.ByReason, quarantineReason{Reason: q.Reason, Keyless: q.Keyless, Count: q.Count, Oldest: q.Oldest})
	}
	return c, nil
}

type noticeCounts struct {
	Pending int64 `json:"pending"`
	Overdue int64 `json:"overdue"` // past their lease: a sweep starts them
}

func countPendingNotices(ctx context.Context, e *env, now time.Time) (noticeCounts, error) {
	var n noticeCounts
	var err error
	n.Pending, n.Overdue, err = e.st.PendingNotices(ctx, now)
	return n, err
}

type workersView struct {
	TaskQueue string          `json:"taskQueue"`
	Polling   []taskQueuePoll `json:"polling"`
	Readiness []readinessView `json:"readiness"` // the --readyz URLs
}

type readinessView struct {
	URL   string `json:"url"`
	Ready bool   `json:"ready"`
	State string `json:"state"` // "ready", or why not
}

func findWorkers(ctx context.Context, e *env, readyz []string) (workersView, error) {
	w := workersView{TaskQueue: e.cfg.Temporal.TaskQueue, Readiness: []readinessView{}}
	var err error
	if w.Polling, err = taskQueuePollers(ctx, e.tc, w.TaskQueue); err != nil {
		return w, err
	}
	for _, u := range readyz {
		ready, state := readiness(ctx, u)
		w.Readiness = append(w.Readiness, readinessView{URL: u, Ready: ready, State: state})
	}
	return w, nil
}

// readiness asks one worker's /readyz and summarises the answer.
func readiness(ctx context.Context, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "bad URL: " + err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "unreachable: " + oneLine(err.Error())
	}
	defer resp.Body.Close()
	var r workerapp.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return false, fmt.Sprintf("HTTP %d, not a /readyz answer", resp.StatusCode)
	}
	if r.Ready {
		return true, "ready"
	}
	var parts []string
	for _, name := range r.Failing {
		parts = append(parts, name+": "+oneLine(r.Dependencies[name].Error))
	}
	return false, "NOT READY (" + strings.Join(parts, "; ") + ")"
}

func countWorkflows(ctx context.Context, tc client.Client, query string) (int64, error) {
	resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
	return resp.GetCount(), err
}

// print is the text view.
func (r statusReport) print(e *env) {
	r.printDrain(e)
	r.printStuck(e)
	r.printWaitingForAPerson(e)
	r.printPollers(e)
	r.printWorkers(e)
}

func (r statusReport) printDrain(e *env) {
	d := r.Drain
	e.printf("drain (last %s)\n", d.window)
	e.printf("  record workflows completed  %d (%.2f/s)\n", d.RecordsCompleted, d.CompletedPerSecond)
	e.printf("  new records stored          %d (%.2f/s)\n", d.RecordsStored, d.StoredPerSecond)
	e.printf("  records in flight           %d (polling pauses at SYNCBRIDGE_MAX_INFLIGHT %d)\n", d.RecordsInFlight, d.MaxInFlight)
	e.printf("  broker backlog              see the consumer group's accumulation in the RocketMQ console\n")
}

func (r statusReport) printStuck(e *env) {
	after := r.Stuck.after
	e.printf("\nrecords running longer than %s: %d\n", after, r.Stuck.Count)
	if len(r.Stuck.Records) == 0 {
		return
	}
	e.table(func(tw io.Writer) {
		fmt.Fprintf(tw, "  KEY\tRUNNING FOR\tWAITS ON\tATTEMPT\tLAST ERROR\n")
		for _, s := range r.Stuck.Records {
			waits, attempt := "a workflow task (no worker?)", "-"
			switch {
			case s.DescribeError != "":
				waits = "describe failed: " + s.DescribeError
			case s.PendingActivity != "":
				waits, attempt = s.PendingActivity, fmt.Sprint(s.Attempt)
				if s.WaitsOn != "" {
					waits += " (" + s.WaitsOn + ")"
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Key, s.runningFor, waits, attempt, orDash(s.LastError))
		}
	})
	if r.Stuck.Count > int64(len(r.Stuck.Records)) {
		e.printf("  (first %d; `starter reconcile --dry-run --stuck-after %s` lists all)\n", len(r.Stuck.Records), after)
	}
}

// printWaitingForAPerson prints conflicts, quarantine and the notices not
// yet in the Web UI.
func (r statusReport) printWaitingForAPerson(e *env) {
	c := r.Conflicts
	e.printf("\nopen conflicts: %d", c.Open)
	if c.Open > 0 {
		e.printf(" over %d keys, oldest received %s (starter conflicts list; conflicts show KEY)", c.Keys, fmtTime(c.OldestReceivedAt))
	}
	e.printf("\n")
	e.printf("\nquarantined, waiting for a decision: %d\n", r.Quarantine.Waiting)
	if len(r.Quarantine.ByReason) > 0 {
		e.table(func(tw io.Writer) {
			fmt.Fprintf(tw, "  REASON\tKEYLESS\tCOUNT\tOLDEST\n")
			for _, q := range r.Quarantine.ByReason {
				keyless := "no"
				if q.Keyless {
					keyless = "yes (no workflow)"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", q.Reason, keyless, q.Count, fmtTime(q.Oldest))
			}
		})
		e.printf("  (starter quarantine list; quarantine show ID)\n")
	}
	if n := r.Notices; n.Pending > 0 {
		e.printf("\nnot yet in the Web UI (flood mode record notices): %d, %d past their lease (a sweep starts them)\n", n.Pending, n.Overdue)
	}
}

func (r statusReport) printPollers(e *env) {
	e.printf("\npollers (%d configured)\n", r.Pollers.Configured)
	for _, p := range r.Pollers.Workflows {
		state := p.Status
		if p.Status == pollerNotStarted {
			state = "not started"
		}
		if p.PollAttempt > 0 {
			state += fmt.Sprintf(", poll attempt %d", p.PollAttempt)
		}
		if !p.LastHeartbeatAt.IsZero() {
			state += ", last heartbeat " + r.At.Sub(p.LastHeartbeatAt).Round(time.Second).String() + " ago"
		}
		if p.LastFailure != "" {
			state += ", last failure: " + p.LastFailure
		}
		e.printf("  %s  %s\n", p.WorkflowID, state)
	}
}

func (r statusReport) printWorkers(e *env) {
	e.printf("\nworkers polling task queue %s\n", r.Workers.TaskQueue)
	if len(r.Workers.Polling) == 0 {
		e.printf("  none: no worker has polled recently; records wait until one runs\n")
	}
	for _, w := range r.Workers.Polling {
		build := ""
		if w.BuildID != "" {
			build = " (build " + w.BuildID + ")"
		}
		e.printf("  %s%s  last poll %s ago\n", w.Identity, build, r.At.Sub(w.LastPollAt).Round(time.Second))
	}
	for _, rz := range r.Workers.Readiness {
		e.printf("  %s  %s\n", rz.URL, rz.State)
	}
}
