package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// pollerWaitEvery is how often stop checks whether the pollers closed.
var pollerWaitEvery = time.Second

func pollersCommand() *command {
	return &command{
		name:    "pollers",
		summary: "start, stop (gracefully) or show the poller workflows",
		about: `The poller workflows (SYNCBRIDGE_POLLERS per topic and group, fixed IDs
poller-<topic>-<group>-<n>) drain the topic into record workflows. Stop is
graceful: each poller finishes the batch in hand (every message of it is
handed to its record workflow) before it completes; records in flight
finish on their own. A stop is recorded in the database and lasts, across
worker restarts, until start; meanwhile workers restart a failed poller
within 30 s. Start brings the configured number back.`,
		actions: []*command{
			{
				name: "start", summary: "start the configured poller workflows that are not running",
				synopsis: "pollers start",
				about:    "Starts the SYNCBRIDGE_POLLERS poller workflows that are not running (running ones are left alone).",
				needs:    needTemporal | needStore,
				run:      pollersStart,
			},
			{
				name: "stop", summary: "stop the poller workflows gracefully and wait for them",
				synopsis: "pollers stop [--no-wait] [--timeout D]",
				about: `
Signals every running poller workflow to stop: it cancels its poll activity,
which hands over the batch in hand and returns; the workflow then completes
instead of continuing as new. Waits until all have closed.`,
				needs: needTemporal | needStore,
				setup: func(fs *flags) runFunc {
					noWait := fs.Bool("no-wait", false, "signal and return without waiting")
					timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the pollers to close")
					return func(ctx context.Context, e *env, _ []string) error { return pollersStop(ctx, e, *noWait, *timeout) }
				},
			},
			{
				name: "status", summary: "show the poller workflows and the records in flight",
				synopsis: "pollers status [--json]",
				about:    "Shows each poller workflow's status and poll activity, the stop intent, and how many records are in flight.",
				needs:    needTemporal,
				optional: needStore, // the stop intent; the rest is worth showing without it
				listing:  true,
				run:      pollersStatus,
			},
		},
	}
}

func pollersStart(ctx context.Context, e *env, _ []string) error {
	if e.cfg.Pipeline.Pollers == 0 {
		return errors.New("SYNCBRIDGE_POLLERS is 0: no poller to start")
	}
	// Clear the stop intent first: from here on the workers' keepers
	// start the pollers too, and would restart one that fails.
	if err := e.st.SetPollersStopped(ctx, e.cfg.MQ.Topic, e.cfg.MQ.Group, false); err != nil {
		return err
	}
	if err := workerapp.EnsurePollers(ctx, e.tc, e.cfg, 0); err != nil {
		return err
	}
	for _, id := range configuredPollers(e.cfg) {
		e.printf("%s running\n", id)
	}
	return nil
}

func pollersStop(ctx context.Context, e *env, noWait bool, timeout time.Duration) error {
	// Record the intent before signalling, so no worker's keeper starts
	// a poller again after it stops: the intent outlives worker restarts
	// until `pollers start`.
	if err := e.st.SetPollersStopped(ctx, e.cfg.MQ.Topic, e.cfg.MQ.Group, true); err != nil {
		return err
	}
	signalled, err := signalPollersToStop(ctx, e)
	if err != nil || noWait || len(signalled) == 0 {
		return err
	}
	if err := waitPollersClosed(ctx, e, signalled, timeout); err != nil {
		return err
	}
	if n, err := countRunningRecords(ctx, e.tc, e.cfg); err == nil {
		e.printf("records in flight: %d (they finish on their own)\n", n)
	}
	return nil
}

// signalPollersToStop signals every poller workflow and returns those that
// were running.
func signalPollersToStop(ctx context.Context, e *env) ([]string, error) {
	ids, err := allPollers(ctx, e.tc, e.cfg)
	if err != nil {
		return nil, err
	}
	var signalled []string
	for _, id := range ids {
		err := e.tc.SignalWorkflow(ctx, id, "", contract.SignalStopPoller, nil)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			e.printf("%s not running\n", id)
		case err != nil:
			return nil, fmt.Errorf("signal %s: %w", id, err)
		default:
			e.progress("%s: stop requested", id)
			signalled = append(signalled, id)
		}
	}
	return signalled, nil
}

func waitPollersClosed(ctx context.Context, e *env, ids []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastNote := time.Now()
	for _, id := range ids {
		for {
			d, err := e.tc.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				return fmt.Errorf("describe %s: %w", id, err)
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
				return fmt.Errorf("%s still running after %s (finishing its batch; check 'starter pollers status')", id, timeout)
			}
			select {
			case <-ctx.Done():
				return errors.New("stopped waiting; the pollers were asked to stop and will")
			case <-time.After(pollerWaitEvery):
			}
		}
	}
	return nil
}

// pollersStatusView is `pollers status`, as --json prints it.
type pollersStatusView struct {
	pollersView
	// StopIntent is "stopped" after 'starter pollers stop' (workers leave
	// the pollers stopped until 'starter pollers start'), "none", or
	// "unknown" when the database could not say (StopIntentError).
	StopIntent      string `json:"stopIntent"`
	StopIntentError string `json:"stopIntentError,omitempty"`
	RecordsInFlight int64  `json:"recordsInFlight"`
	MaxInFlight     int    `json:"maxInFlight"`
}

func pollersStatus(ctx context.Context, e *env, _ []string) error {
	v := pollersStatusView{MaxInFlight: e.cfg.Pipeline.MaxInFlight}
	var err error
	if v.pollersView, err = describePollers(ctx, e); err != nil {
		return err
	}
	v.StopIntent, v.StopIntentError = readStopIntent(ctx, e)
	if v.RecordsInFlight, err = countRunningRecords(ctx, e.tc, e.cfg); err != nil {
		return fmt.Errorf("count records in flight: %w", err)
	}
	return e.output(v, func() { v.print(e) })
}

func readStopIntent(ctx context.Context, e *env) (intent, why string) {
	if e.st == nil {
		return "unknown", e.unavailable[needStore].Error()
	}
	stopped, err := e.st.PollersStopped(ctx, e.cfg.MQ.Topic, e.cfg.MQ.Group)
	switch {
	case err != nil:
		return "unknown", err.Error()
	case stopped:
		return "stopped", ""
	}
	return "none", ""
}

func (v pollersStatusView) print(e *env) {
	e.table(func(tw io.Writer) {
		fmt.Fprintf(tw, "POLLER\tSTATUS\tSTARTED\tPOLL ATTEMPT\tLAST HEARTBEAT\tLAST FAILURE\n")
		for _, p := range v.Workflows {
			if p.Status == pollerNotStarted {
				fmt.Fprintf(tw, "%s\tnot started\t-\t-\t-\t-\n", p.WorkflowID)
				continue
			}
			attempt := "-"
			if p.PollAttempt > 0 {
				attempt = fmt.Sprint(p.PollAttempt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.WorkflowID, p.Status, fmtTime(p.StartedAt), attempt, fmtTime(p.LastHeartbeatAt), orDash(p.LastFailure))
		}
	})
	switch v.StopIntent {
	case "unknown":
		e.printf("stop intent: unknown (%s)\n", v.StopIntentError)
	case "stopped":
		e.printf("stop intent: stopped by 'starter pollers stop'; workers leave the pollers stopped until 'starter pollers start'\n")
	}
	e.printf("records in flight: %d (cap SYNCBRIDGE_MAX_INFLIGHT %d)\n", v.RecordsInFlight, v.MaxInFlight)
}

// pollerNotStarted is the status of a configured poller Temporal has no
// run of.
const pollerNotStarted = "not_started"

type pollersView struct {
	Configured int          `json:"configured"` // SYNCBRIDGE_POLLERS
	Workflows  []pollerView `json:"workflows"`
}

type pollerView struct {
	WorkflowID string `json:"workflowId"`
	// Status is the latest run's (running, completed, ...) or not_started.
	Status    string    `json:"status"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// PollAttempt, LastHeartbeatAt and LastFailure describe the pending
	// poll activity; zero when none is pending.
	PollAttempt     int32     `json:"pollAttempt,omitempty"`
	LastHeartbeatAt time.Time `json:"lastHeartbeatAt,omitzero"`
	LastFailure     string    `json:"lastFailure,omitempty"`
}

// describePollers reads every poller workflow's state.
func describePollers(ctx context.Context, e *env) (pollersView, error) {
	ids, err := allPollers(ctx, e.tc, e.cfg)
	if err != nil {
		return pollersView{}, err
	}
	v := pollersView{Configured: e.cfg.Pipeline.Pollers, Workflows: make([]pollerView, 0, len(ids))}
	for _, id := range ids {
		p := pollerView{WorkflowID: id, Status: pollerNotStarted}
		d, err := e.tc.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			v.Workflows = append(v.Workflows, p)
			continue
		case err != nil:
			return v, fmt.Errorf("describe %s: %w", id, err)
		}
		info := d.GetWorkflowExecutionInfo()
		p.Status, p.StartedAt = statusName(info.GetStatus()), info.GetStartTime().AsTime().UTC()
		if pas := d.GetPendingActivities(); len(pas) > 0 {
			p.PollAttempt = pas[0].GetAttempt()
			if hb := pas[0].GetLastHeartbeatTime(); hb != nil {
				p.LastHeartbeatAt = hb.AsTime().UTC()
			}
			if f := pas[0].GetLastFailure(); f != nil {
				p.LastFailure = oneLine(e.failureText(f))
			}
		}
		v.Workflows = append(v.Workflows, p)
	}
	return v, nil
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
