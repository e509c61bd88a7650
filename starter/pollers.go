package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

const pollersAbout = `The poller workflows (SYNCBRIDGE_POLLERS per topic and group, fixed IDs
poller-<topic>-<group>-<n>) drain the topic into record workflows. Stop is
graceful: each poller finishes the batch in hand (every message of it is
handed to its record workflow) before it completes; records in flight
finish on their own. A stop is recorded in the database and lasts, across
worker restarts, until start; meanwhile workers restart a failed poller
within 30 s. Start brings the configured number back.`

// pollerWaitEvery is how often stop checks whether the pollers closed.
var pollerWaitEvery = time.Second

func runPollers(ctx context.Context, e *env, args []string) int {
	return dispatch(ctx, e, "pollers", pollersAbout, []action{
		{"start", "start the configured poller workflows that are not running", pollersStart},
		{"stop", "stop the poller workflows gracefully and wait for them", pollersStop},
		{"status", "show the poller workflows and the records in flight", pollersStatus},
	}, args)
}

func pollersStart(ctx context.Context, e *env, args []string) int {
	fs := newFlags("pollers start", "pollers start", "Starts the SYNCBRIDGE_POLLERS poller workflows that are not running (running ones are left alone).")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	if cfg.Pipeline.Pollers == 0 {
		return e.fail("SYNCBRIDGE_POLLERS is 0: no poller to start")
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	// Clear the stop intent first: from here on the workers' keepers
	// start the pollers too, and would restart one that fails.
	if err := st.SetPollersStopped(ctx, cfg.MQ.Topic, cfg.MQ.Group, false); err != nil {
		return e.fail("%v", err)
	}
	if err := workerapp.EnsurePollers(ctx, tc, cfg, 0); err != nil {
		return e.fail("%v", err)
	}
	for _, id := range configuredPollers(cfg) {
		e.printf("%s running\n", id)
	}
	return exitOK
}

func pollersStop(ctx context.Context, e *env, args []string) int {
	fs := newFlags("pollers stop", "pollers stop [--no-wait] [--timeout D]", `
Signals every running poller workflow to stop: it cancels its poll activity,
which hands over the batch in hand and returns; the workflow then completes
instead of continuing as new. Waits until all have closed.`)
	noWait := fs.Bool("no-wait", false, "signal and return without waiting")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the pollers to close")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
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
	// Record the intent before signalling, so no worker's keeper starts
	// a poller again after it stops: the intent outlives worker restarts
	// until `pollers start`.
	if err := st.SetPollersStopped(ctx, cfg.MQ.Topic, cfg.MQ.Group, true); err != nil {
		return e.fail("%v", err)
	}
	ids, err := allPollers(ctx, tc, cfg)
	if err != nil {
		return e.fail("%v", err)
	}
	var signalled []string
	for _, id := range ids {
		err := tc.SignalWorkflow(ctx, id, "", contract.SignalStopPoller, nil)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			e.printf("%s not running\n", id)
		case err != nil:
			return e.fail("signal %s: %v", id, err)
		default:
			e.progress("%s: stop requested", id)
			signalled = append(signalled, id)
		}
	}
	if *noWait || len(signalled) == 0 {
		return exitOK
	}
	deadline := time.Now().Add(*timeout)
	lastNote := time.Now()
	for _, id := range signalled {
		for {
			d, err := tc.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				return e.fail("describe %s: %v", id, err)
			}
			s := d.GetWorkflowExecutionInfo().GetStatus()
			if s != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				e.printf("%s stopped (%s)\n", id, statusName(s))
				break
			}
			if time.Since(lastNote) >= 10*time.Second {
				// The poll activity hears of the stop at its next
				// heartbeat, then hands over the batch in hand.
				e.progress("%s: still finishing its batch...", id)
				lastNote = time.Now()
			}
			if time.Now().After(deadline) {
				return e.fail("%s still running after %s (finishing its batch; check 'starter pollers status')", id, *timeout)
			}
			select {
			case <-ctx.Done():
				return e.fail("stopped waiting; the pollers were asked to stop and will")
			case <-time.After(pollerWaitEvery):
			}
		}
	}
	if n, err := countRunningRecords(ctx, tc, cfg); err == nil {
		e.printf("records in flight: %d (they finish on their own)\n", n)
	}
	return exitOK
}

func pollersStatus(ctx context.Context, e *env, args []string) int {
	fs := newFlags("pollers status", "pollers status", "Shows each poller workflow's status and poll activity, and how many records are in flight.")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	ids, err := allPollers(ctx, tc, cfg)
	if err != nil {
		return e.fail("%v", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "POLLER\tSTATUS\tSTARTED\tPOLL ATTEMPT\tLAST HEARTBEAT\tLAST FAILURE\n")
	for _, id := range ids {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			fmt.Fprintf(tw, "%s\tnot started\t-\t-\t-\t-\n", id)
			continue
		}
		if err != nil {
			return e.fail("describe %s: %v", id, err)
		}
		info := d.GetWorkflowExecutionInfo()
		attempt, hb, lastFail := "-", "-", "-"
		for _, pa := range d.GetPendingActivities() {
			attempt = fmt.Sprint(pa.GetAttempt())
			if pa.GetLastHeartbeatTime() != nil {
				hb = fmtTime(pa.GetLastHeartbeatTime().AsTime())
			}
			if pa.GetLastFailure() != nil {
				lastFail = oneLine(e.failureText(pa.GetLastFailure()))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, statusName(info.GetStatus()), fmtTime(info.GetStartTime().AsTime()), attempt, hb, lastFail)
	}
	tw.Flush()
	if st, err := e.store(ctx); err != nil {
		e.printf("stop intent: unknown (%v)\n", err)
	} else if stopped, err := st.PollersStopped(ctx, cfg.MQ.Topic, cfg.MQ.Group); err != nil {
		e.printf("stop intent: unknown (%v)\n", err)
	} else if stopped {
		e.printf("stop intent: stopped by 'starter pollers stop'; workers leave the pollers stopped until 'starter pollers start'\n")
	}
	n, err := countRunningRecords(ctx, tc, cfg)
	if err != nil {
		return e.fail("count records in flight: %v", err)
	}
	e.printf("records in flight: %d (cap SYNCBRIDGE_MAX_INFLIGHT %d)\n", n, cfg.Pipeline.MaxInFlight)
	return exitOK
}

func configuredPollers(cfg config.Config) []string {
	ids := make([]string, 0, cfg.Pipeline.Pollers)
	for i := 0; i < cfg.Pipeline.Pollers; i++ {
		ids = append(ids, contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i))
	}
	return ids
}

// allPollers is the configured poller IDs plus any other running poller of
// this topic and group (left by a fleet once configured with more).
func allPollers(ctx context.Context, tc client.Client, cfg config.Config) ([]string, error) {
	ids := configuredPollers(cfg)
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	prefix := strings.TrimSuffix(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "0")
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: 100,
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND TaskQueue = '%s'",
			contract.PollerWorkflowName, escapeQuery(cfg.Temporal.TaskQueue)),
	})
	if err != nil {
		return nil, fmt.Errorf("list running pollers: %w", err)
	}
	var extra []string
	for _, x := range resp.GetExecutions() {
		id := x.GetExecution().GetWorkflowId()
		if strings.HasPrefix(id, prefix) && !seen[id] {
			seen[id] = true
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	return append(ids, extra...), nil
}

func countRunningRecords(ctx context.Context, tc client.Client, cfg config.Config) (int64, error) {
	resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("%s AND ExecutionStatus = 'Running' AND TaskQueue = '%s'",
			contract.RecordTypesQuery, escapeQuery(cfg.Temporal.TaskQueue)),
	})
	if err != nil {
		return 0, err
	}
	return resp.GetCount(), nil
}
