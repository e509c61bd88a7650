package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

func inspectCommand() *command {
	return &command{
		name:     "inspect",
		summary:  "everything known about one key: workflow, history, row, conflicts, quarantine",
		synopsis: "inspect KEY [--show-payload]",
		about: `
Shows everything known about one key: its record workflow's runs, the latest
run's status, pending activities (attempt, last failure) and history
summary, the stored row, conflicts and quarantine entries. Patient data is
masked unless --show-payload. Exits 1 when nothing at all is known.`,
		needs:       needTemporal | needStore,
		args:        exactly(1, "KEY"),
		patientData: true,
		run:         inspect,
	}
}

func inspect(ctx context.Context, e *env, args []string) error {
	key, show := args[0], e.showPayload
	e.printf("key %s\n\n", key)
	found, err := inspectWorkflow(ctx, e, e.tc, contract.RecordWorkflowID(e.cfg.Pipeline.WorkflowIDPrefix, key))
	if err != nil {
		return err
	}
	e.printf("\n")
	row, ok, err := e.st.Record(ctx, key)
	if err != nil {
		return err
	}
	printRow(e, row, ok, show)
	cs, err := e.st.Conflicts(ctx, key)
	if err != nil {
		return err
	}
	printConflicts(e, cs, show)
	qs, err := e.st.ListQuarantine(ctx, store.QuarantineFilter{Key: key})
	if err != nil {
		return err
	}
	printQuarantine(e, qs, show)
	if !found && !ok && len(cs) == 0 && len(qs) == 0 {
		return fmt.Errorf("nothing is known about key %s", key)
	}
	return nil
}

func printQuarantine(e *env, qs []store.QuarantineItem, show bool) {
	if !e.section("quarantine", len(qs)) {
		return
	}
	for _, q := range qs {
		e.printf("  #%d %s  reason %s  message %s  quarantined %s\n", q.ID, q.Status, q.Reason, orDash(q.MessageID), fmtTime(q.QuarantinedAt))
		if q.StatusReason != "" {
			e.printf("     status reason: %s\n", q.StatusReason)
		}
		e.printf("     detail: %s\n", orDash(q.Detail))
		e.printf("     body: %s\n", maskBody(q.Body, show))
	}
}

// inspectWorkflow prints the runs of a record workflow ID and details of
// the latest. found is false when Temporal knows no run.
func inspectWorkflow(ctx context.Context, e *env, tc client.Client, id string) (found bool, err error) {
	d, err := tc.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		e.printf("workflow %s: no run in Temporal (never started, or past retention)\n", id)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe workflow %s: %w", id, err)
	}
	info := d.GetWorkflowExecutionInfo()
	e.printf("workflow %s\n", id)
	e.printf("  latest run:  %s\n", info.GetExecution().GetRunId())
	e.printf("  status:      %s\n", statusName(info.GetStatus()))
	e.printf("  started:     %s\n", fmtTime(info.GetStartTime().AsTime()))
	if info.GetCloseTime() != nil {
		e.printf("  closed:      %s\n", fmtTime(info.GetCloseTime().AsTime()))
	}
	e.printf("  task queue:  %s\n", info.GetTaskQueue())
	e.printf("  history:     %d events\n", info.GetHistoryLength())

	// Every run of the ID the visibility store still holds, newest first,
	// and replays of the key's quarantine rows.
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: 20,
		Query:    fmt.Sprintf("WorkflowId = '%s' OR WorkflowId STARTS_WITH '%s#replay-'", escapeQuery(id), escapeQuery(id)),
	})
	if err == nil && len(resp.GetExecutions()) > 0 {
		e.printf("  runs:\n")
		e.table(func(tw io.Writer) {
			for _, x := range resp.GetExecutions() {
				closed := "-"
				if x.GetCloseTime() != nil {
					closed = fmtTime(x.GetCloseTime().AsTime())
				}
				fmt.Fprintf(tw, "    %s\t%s\t%s\tstarted %s\tclosed %s\n", x.GetExecution().GetWorkflowId(), x.GetExecution().GetRunId(),
					statusName(x.GetStatus()), fmtTime(x.GetStartTime().AsTime()), closed)
			}
		})
	}

	if pas := d.GetPendingActivities(); len(pas) > 0 {
		e.printf("  pending activities:\n")
		for _, pa := range pas {
			e.printf("    %s  state %s  attempt %d", pa.GetActivityType().GetName(), snake(pa.GetState().String()), pa.GetAttempt())
			if pa.GetLastFailure() != nil {
				e.printf("  last failure: %s", oneLine(e.failureText(pa.GetLastFailure())))
			}
			e.printf("\n")
		}
	}

	// History summary: event counts by type, and the signals received.
	counts := map[string]int{}
	iter := tc.GetWorkflowHistory(ctx, id, info.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var failure string
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return true, fmt.Errorf("read history of %s: %w", id, err)
		}
		counts[snake(ev.GetEventType().String())]++
		if at := ev.GetActivityTaskFailedEventAttributes(); at != nil {
			failure = e.failureText(at.GetFailure())
		}
		if at := ev.GetWorkflowExecutionTerminatedEventAttributes(); at != nil {
			failure = "terminated: " + at.GetReason()
		}
		if at := ev.GetWorkflowExecutionFailedEventAttributes(); at != nil {
			failure = "failed: " + e.failureText(at.GetFailure())
		}
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	e.printf("  history summary:\n")
	e.table(func(tw io.Writer) {
		for _, n := range names {
			fmt.Fprintf(tw, "    %s\t%d\n", n, counts[n])
		}
	})
	if failure != "" {
		e.printf("  last failure: %s\n", oneLine(failure))
	}
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		var res contract.RecordResult
		err := tc.GetWorkflow(ctx, id, info.GetExecution().GetRunId()).Get(ctx, &res)
		if err != nil {
			// Said, not skipped: a missing line reads as "no result".
			e.printf("  result:      %s\n", undecryptable(err))
		} else {
			e.printf("  result:      outcome %s, acked %d, handles expired %d\n", orDash(string(res.Outcome)), res.Acked, res.AckExpired)
			for _, m := range res.Messages {
				e.printf("    message %s: %s %s\n", m.MessageID, m.Outcome, m.Reason)
			}
		}
	}
	return true, nil
}
