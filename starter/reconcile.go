package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
)

const reconcileAbout = `
Starts the reconciliation workflow (ID syncbridge-reconcile; one at a time
per namespace: a second start reports the running one and fails). It lists
record workflows that failed, were terminated, timed out or were canceled,
checks each key against the database and re-drives those not committed (a
new run from the workflow's own recorded input); committed ones are left
alone. Running records older than --stuck-after are reported with what they
wait on, not touched. Quarantine rows marked for replay are replayed. Starts
are paced by --rate. Waits for the report and prints it (progress on
stderr); the Web UI shows the same report as the workflow's result.`

// reconcilePollEvery is how often progress is queried while waiting.
var reconcilePollEvery = 2 * time.Second

func runReconcile(ctx context.Context, e *env, args []string) int {
	fs := newFlags("reconcile", "reconcile [--since DURATION] [--dry-run] [--rate N/s] [flags]", reconcileAbout)
	since := fs.Duration("since", 0, "only records closed (stuck: started) within this `DURATION` before now; 0 = all history Temporal retains")
	dryRun := fs.Bool("dry-run", false, "check and report only; start nothing, change nothing")
	rate := fs.String("rate", "10/s", "maximum re-drives and replays started, as `N/s` or N/m")
	stuckAfter := fs.Duration("stuck-after", 15*time.Minute, "a running record older than this `DURATION` is reported as stuck")
	pageSize := fs.Int("page-size", 100, "executions checked per listing activity")
	perRun := fs.Int("items-per-run", 1000, "items per workflow run before it continues as new (bounds history)")
	detach := fs.Bool("detach", false, "start and return without waiting for the report")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	perSecond, err := parseRate(*rate)
	if err != nil {
		return usageError(e, fs, "--rate: %v", err)
	}
	if *since < 0 || *stuckAfter <= 0 || *pageSize <= 0 || *perRun <= 0 {
		return usageError(e, fs, "--since must be >= 0; --stuck-after, --page-size and --items-per-run > 0")
	}

	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	in := contract.ReconcileInput{
		DryRun: *dryRun, RatePerSecond: perSecond, StuckAfter: *stuckAfter,
		PageSize: *pageSize, ItemsBeforeContinue: *perRun,
	}
	if *since > 0 {
		in.Since = time.Now().Add(-*since).UTC()
	}
	wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       contract.ReconcileWorkflowID,
		TaskQueue:                                cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, contract.ReconcileWorkflowName, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return e.fail("a reconciliation is already running: workflow %s run %s (wait for it, or terminate it in the Web UI)",
			contract.ReconcileWorkflowID, already.RunId)
	}
	if err != nil {
		return e.fail("start reconciliation: %v", err)
	}
	mode := ""
	if *dryRun {
		mode = " (dry run)"
	}
	e.progress("reconciliation started%s: workflow %s run %s on task queue %s", mode, wr.GetID(), wr.GetRunID(), cfg.Temporal.TaskQueue)
	if *detach {
		e.printf("%s %s\n", wr.GetID(), wr.GetRunID())
		return exitOK
	}

	rep, err := waitReconcile(ctx, e, tc, wr)
	if err != nil {
		if ctx.Err() != nil {
			return e.fail("stopped waiting; the reconciliation goes on: workflow %s run %s", wr.GetID(), wr.GetRunID())
		}
		return e.fail("reconciliation %s failed: %v", wr.GetID(), err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		e.printf("%s\n", b)
	} else {
		printReport(e, wr, rep)
	}
	if rep.Errors > 0 {
		return exitFailure
	}
	return exitOK
}

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
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  KEY\tSTARTED\tWAITING ON\tATTEMPT\tLAST FAILURE\n")
		for _, s := range r.StuckRecords {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", s.Key, fmtTime(s.StartTime), orDash(s.PendingActivity), s.Attempt, orDash(oneLine(s.LastFailure)))
		}
		tw.Flush()
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
