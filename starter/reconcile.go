package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

func reconcileCommand() *command {
	return &command{
		name:     "reconcile",
		summary:  "re-drive records an incident left uncommitted; replay quarantine rows marked for replay",
		synopsis: "reconcile [--since DURATION] [--dry-run] [--rate N/s] [--json] [flags]",
		about: `
Starts the reconciliation workflow (ID syncbridge-reconcile; one at a time
per namespace: a second start reports the running one and fails). It lists
record workflows that failed, were terminated, timed out or were canceled,
checks each key against the database and re-drives those not committed (a
new run from the workflow's own recorded input); committed ones are left
alone. Running records older than --stuck-after are reported with what they
wait on, not touched. Quarantine rows marked for replay are replayed. Starts
are paced by --rate. Waits for the report and prints it (progress on
stderr); the Web UI shows the same report as the workflow's result. Exits 1
when the report counts errors. --detach prints the workflow and run IDs
(with --json, as {"workflowId", "runId"}).`,
		needs:   needTemporal,
		listing: true,
		setup: func(fs *flags) runFunc {
			var in contract.ReconcileInput
			since := fs.Duration("since", 0, "only records closed (stuck: started) within this `DURATION` before now; 0 = all history Temporal retains")
			fs.BoolVar(&in.DryRun, "dry-run", false, "check and report only; start nothing, change nothing")
			rate := fs.String("rate", "10/s", "maximum re-drives and replays started, as `N/s` or N/m")
			fs.DurationVar(&in.StuckAfter, "stuck-after", workerapp.DefaultStuckAfter, "a running record older than this `DURATION` is reported as stuck")
			fs.IntVar(&in.PageSize, "page-size", 100, "executions checked per listing activity")
			fs.IntVar(&in.ItemsBeforeContinue, "items-per-run", 1000, "items per workflow run before it continues as new (bounds history)")
			detach := fs.Bool("detach", false, "start and return without waiting for the report")
			fs.check(func([]string) error {
				var err error
				if in.RatePerSecond, err = parseRate(*rate); err != nil {
					return usagef("--rate: %v", err)
				}
				if *since < 0 || in.StuckAfter <= 0 || in.PageSize <= 0 || in.ItemsBeforeContinue <= 0 {
					return usagef("--since must be >= 0; --stuck-after, --page-size and --items-per-run > 0")
				}
				return nil
			})
			return func(ctx context.Context, e *env, _ []string) error {
				if *since > 0 {
					in.Since = time.Now().Add(-*since).UTC()
				}
				return reconcile(ctx, e, in, *detach)
			}
		},
	}
}

func reconcile(ctx context.Context, e *env, in contract.ReconcileInput, detach bool) error {
	wr, err := startReconcile(ctx, e, in)
	if err != nil {
		return err
	}
	if detach {
		started := struct {
			WorkflowID string `json:"workflowId"`
			RunID      string `json:"runId"`
		}{wr.GetID(), wr.GetRunID()}
		return e.output(started, func() { e.printf("%s %s\n", wr.GetID(), wr.GetRunID()) })
	}
	rep, err := waitReconcile(ctx, e, e.tc, wr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting; the reconciliation goes on: workflow %s run %s", wr.GetID(), wr.GetRunID())
		}
		return fmt.Errorf("reconciliation %s failed: %w", wr.GetID(), err)
	}
	if err := e.output(newReconcileView(wr, rep), func() { printReport(e, wr, rep) }); err != nil {
		return err
	}
	if rep.Errors > 0 {
		return fmt.Errorf("reconciliation %s counted %d errors", wr.GetID(), rep.Errors)
	}
	return nil
}

func startReconcile(ctx context.Context, e *env, in contract.ReconcileInput) (client.WorkflowRun, error) {
	wr, err := e.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       contract.ReconcileWorkflowID,
		TaskQueue:                                e.cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, contract.ReconcileWorkflowName, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil, fmt.Errorf("a reconciliation is already running: workflow %s run %s (wait for it, or terminate it in the Web UI)",
			contract.ReconcileWorkflowID, already.RunId)
	}
	if err != nil {
		return nil, fmt.Errorf("start reconciliation: %w", err)
	}
	mode := ""
	if in.DryRun {
		mode = " (dry run)"
	}
	e.progress("reconciliation started%s: workflow %s run %s on task queue %s", mode, wr.GetID(), wr.GetRunID(), e.cfg.Temporal.TaskQueue)
	return wr, nil
}

// reconcileView is the report as --json prints it: its own field names,
// so the workflow's result type can change without breaking scripts.
type reconcileView struct {
	WorkflowID string    `json:"workflowId"`
	RunID      string    `json:"runId"` // the first run's
	DryRun     bool      `json:"dryRun"`
	Since      time.Time `json:"since,omitzero"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Runs       int       `json:"runs"`
	// Listed record executions, by how they closed (stuck: running).
	Failed     int `json:"failed"`
	Terminated int `json:"terminated"`
	TimedOut   int `json:"timedOut"`
	Canceled   int `json:"canceled"`
	Stuck      int `json:"stuck"`
	// What happened to the closed ones.
	Committed    int `json:"committed"`
	Quarantined  int `json:"quarantined"`
	Superseded   int `json:"superseded"`
	Skipped      int `json:"skipped"`
	NoInput      int `json:"noInput"`
	Redriven     int `json:"redriven"`
	WouldRedrive int `json:"wouldRedrive"`
	Errors       int `json:"errors"`

	RedrivenKeys     []string         `json:"redrivenKeys"`
	KeysOmitted      int              `json:"keysOmitted"`
	StuckRecords     []reconcileStuck `json:"stuckRecords"`
	StuckOmitted     int              `json:"stuckOmitted"`
	ReplaysRequested int              `json:"replaysRequested"`
	ReplaysStarted   int              `json:"replaysStarted"`
	ReplayIDs        []int64          `json:"replayIds"`
	ErrorSamples     []string         `json:"errorSamples"`
}

type reconcileStuck struct {
	Key             string    `json:"key"`
	WorkflowID      string    `json:"workflowId"`
	RunID           string    `json:"runId"`
	StartedAt       time.Time `json:"startedAt"`
	PendingActivity string    `json:"pendingActivity"` // empty: waiting for a workflow task
	Attempt         int32     `json:"attempt"`
	LastFailure     string    `json:"lastFailure,omitempty"`
}

func newReconcileView(wr client.WorkflowRun, r contract.ReconcileReport) reconcileView {
	v := reconcileView{
		WorkflowID: wr.GetID(), RunID: wr.GetRunID(), DryRun: r.DryRun, Since: r.Since, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Runs: r.Runs,
		Failed: r.Failed, Terminated: r.Terminated, TimedOut: r.TimedOut, Canceled: r.Canceled, Stuck: r.Stuck,
		Committed: r.Committed, Quarantined: r.Quarantined, Superseded: r.Superseded, Skipped: r.Skipped, NoInput: r.NoInput,
		Redriven: r.Redriven, WouldRedrive: r.WouldRedrive, Errors: r.Errors,
		RedrivenKeys: append([]string{}, r.RedrivenKeys...), KeysOmitted: r.KeysOmitted,
		StuckRecords: make([]reconcileStuck, 0, len(r.StuckRecords)), StuckOmitted: r.StuckOmitted,
		ReplaysRequested: r.ReplaysRequested, ReplaysStarted: r.ReplaysStarted,
		ReplayIDs: append([]int64{}, r.ReplayIDs...), ErrorSamples: append([]string{}, r.ErrorSamples...),
	}
	for _, s := range r.StuckRecords {
		v.StuckRecords = append(v.StuckRecords, reconcileStuck{
			Key: s.Key, WorkflowID: s.WorkflowID, RunID: s.RunID, StartedAt: s.StartTime,
			PendingActivity: s.PendingActivity, Attempt: s.Attempt, LastFailure: s.LastFailure,
		})
	}
	return v
}

// reconcilePollEvery is how often progress is queried while waiting.
var reconcilePollEvery = 2 * time.Second

// waitReconcile waits for the result (following continue-as-new) and
// prints progress from the workflow's progress query meanwhile.
func waitReconcile(ctx context.Context, e *env, tc client.Client, wr client.WorkflowRun) (contract.ReconcileReport, error) {
	var rep contract.ReconcileReport
	done := make(chan error, 1)
	go func() { done <- wr.Get(ctx, &rep) }()
	tick := time.NewTicker(reconcilePollEvery)
	defer tick.Stop()
	last := ""
	started, hinted := time.Now(), false
	for {
		select {
		case err := <-done:
			return rep, err
		case <-tick.C:
			v, err := tc.QueryWorkflow(ctx, wr.GetID(), "", contract.QueryReconcileProgress)
			if err != nil {
				// No worker yet, or between runs.
				if !hinted && last == "" && time.Since(started) > 15*time.Second {
					e.progress("no worker has picked the reconciliation up yet: is a worker running on task queue %s? (Ctrl-C stops waiting; the workflow stays)",
						e.cfg.Temporal.TaskQueue)
					hinted = true
				}
				continue
			}
			var p contract.ReconcileReport
			if v.Get(&p) != nil {
				continue
			}
			line := fmt.Sprintf("progress: listed %d (failed %d, terminated %d, timed out %d, canceled %d, stuck %d), re-driven %d, would re-drive %d, left alone %d, replays %d, errors %d",
				p.Failed+p.Terminated+p.TimedOut+p.Canceled+p.Stuck, p.Failed, p.Terminated, p.TimedOut, p.Canceled, p.Stuck,
				p.Redriven, p.WouldRedrive, p.Committed+p.Quarantined+p.Superseded+p.Skipped, p.ReplaysStarted, p.Errors)
			if line != last {
				e.progress("%s", line)
				last = line
			}
		}
	}
}

func printReport(e *env, wr client.WorkflowRun, r contract.ReconcileReport) {
	mode := ""
	if r.DryRun {
		mode = " DRY RUN: nothing was changed"
	}
	e.printf("reconciliation %s (first run %s)%s\n", wr.GetID(), wr.GetRunID(), mode)
	if !r.Since.IsZero() {
		e.printf("since:       %s\n", fmtTime(r.Since))
	}
	e.printf("ran:         %s .. %s in %d run(s)\n", fmtTime(r.StartedAt), fmtTime(r.FinishedAt), r.Runs)
	e.printf("listed:      failed %d, terminated %d, timed out %d, canceled %d, stuck %d\n",
		r.Failed, r.Terminated, r.TimedOut, r.Canceled, r.Stuck)
	e.printf("left alone:  committed %d, quarantined %d, superseded by a newer run %d, not a pipeline record %d, no input %d\n",
		r.Committed, r.Quarantined, r.Superseded, r.Skipped, r.NoInput)
	if r.DryRun {
		e.printf("would re-drive: %d\n", r.WouldRedrive)
	} else {
		e.printf("re-driven:   %d\n", r.Redriven)
	}
	if len(r.RedrivenKeys) > 0 {
		e.printf("keys:\n")
		for _, k := range r.RedrivenKeys {
			e.printf("  %s\n", k)
		}
		if r.KeysOmitted > 0 {
			e.printf("  ... and %d more\n", r.KeysOmitted)
		}
	}
	if len(r.StuckRecords) > 0 {
		e.printf("stuck records (running longer than the threshold; not touched):\n")
		e.table(func(tw io.Writer) {
			fmt.Fprintf(tw, "  KEY\tSTARTED\tWAITING ON\tATTEMPT\tLAST FAILURE\n")
			for _, s := range r.StuckRecords {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", s.Key, fmtTime(s.StartTime), orDash(s.PendingActivity), s.Attempt, orDash(oneLine(s.LastFailure)))
			}
		})
		if r.StuckOmitted > 0 {
			e.printf("  ... and %d more\n", r.StuckOmitted)
		}
	}
	e.printf("quarantine:  %d marked for replay, %d replays started", r.ReplaysRequested, r.ReplaysStarted)
	if len(r.ReplayIDs) > 0 {
		ids := make([]string, len(r.ReplayIDs))
		for i, id := range r.ReplayIDs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		e.printf(" (ids %s)", strings.Join(ids, ", "))
	}
	e.printf("\nerrors:      %d\n", r.Errors)
	for _, s := range r.ErrorSamples {
		e.printf("  %s\n", oneLine(s))
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// parseRate reads "N/s", "N/m" or "N" (per second).
func parseRate(s string) (float64, error) {
	num, unit := s, "s"
	if i := strings.IndexByte(s, '/'); i >= 0 {
		num, unit = s[:i], s[i+1:]
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive rate like 10/s", s)
	}
	switch unit {
	case "s", "sec":
		return n, nil
	case "m", "min":
		return n / 60, nil
	}
	return 0, fmt.Errorf("%q: unit must be /s or /m", s)
}
