package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// Reconciliation defaults; see contract.ReconcileInput.
const (
	defaultReconcileRate       = 10.0
	defaultStuckAfter          = 15 * time.Minute
	defaultReconcilePageSize   = 100
	defaultItemsBeforeContinue = 1000
	maxReconcilePageSize       = 1000
)

// reconcilePhases is the order in which categories are visited; the last
// phase replays quarantine rows marked replay_requested.
var reconcilePhases = []string{
	activities.CategoryFailed,
	activities.CategoryTerminated,
	activities.CategoryTimedOut,
	activities.CategoryCanceled,
	activities.CategoryStuck,
	phaseQuarantine,
}

const phaseQuarantine = "quarantine"

// reconcileRetry gives up on a listing after about five minutes of
// failures (a broken visibility query or an unreachable database), so the
// reconciliation fails with the reason instead of waiting forever; a failed
// re-drive is counted in the report and the rest goes on.
var reconcileRetry = &temporal.RetryPolicy{
	InitialInterval:        time.Second,
	BackoffCoefficient:     2,
	MaximumInterval:        time.Minute,
	MaximumAttempts:        10,
	NonRetryableErrorTypes: []string{contract.ErrTypeBadInput},
}

// operatorRetry retries replays and resolutions while the database is
// away: the operator's request is kept, visible as a pending activity.
var operatorRetry = &temporal.RetryPolicy{
	InitialInterval:        time.Second,
	BackoffCoefficient:     2,
	MaximumInterval:        time.Minute,
	MaximumAttempts:        0,
	NonRetryableErrorTypes: []string{contract.ErrTypeBadInput},
}

// ReconcileWorkflow finds records an incident left behind and re-drives
// those that are not committed. It visits, page by page, record workflows
// that failed, were terminated, timed out or were canceled (re-driving the
// latest run of each uncommitted key from its recorded input), running
// records older than StuckAfter (reported with what they wait on, never
// touched), and quarantine rows marked replay_requested (replays started).
// Starts are paced at RatePerSecond with workflow timers, and the workflow
// continues as new every ItemsBeforeContinue items carrying its report,
// which is its result. A dry run checks everything and starts nothing.
func ReconcileWorkflow(ctx workflow.Context, in contract.ReconcileInput) (contract.ReconcileReport, error) {
	in = reconcileDefaults(in)
	st := &in.State
	if st.Now.IsZero() {
		st.Now = workflow.Now(ctx).UTC()
		st.Report.StartedAt = st.Now
		st.Report.DryRun = in.DryRun
		st.Report.Since = in.Since
	}
	rep := &st.Report
	rep.Runs++
	if err := workflow.SetQueryHandler(ctx, contract.QueryReconcileProgress, func() (contract.ReconcileReport, error) {
		return *rep, nil
	}); err != nil {
		return *rep, err
	}

	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         reconcileRetry,
	})
	pause := time.Duration(float64(time.Second) / in.RatePerSecond)
	handled := 0

	for st.Phase < len(reconcilePhases) {
		if handled >= in.ItemsBeforeContinue {
			return *rep, workflow.NewContinueAsNewError(ctx, contract.ReconcileWorkflowName, in)
		}
		phase := reconcilePhases[st.Phase]
		if phase == phaseQuarantine {
			var rows []activities.ReplayRequestedRow
			if err := workflow.ExecuteActivity(actx, a.ListReplayRequested, activities.ReplayRequestedInput{
				AfterID: st.AfterQuarantineID, Limit: in.PageSize,
			}).Get(ctx, &rows); err != nil {
				return *rep, err
			}
			for _, r := range rows {
				rep.ReplaysRequested++
				if in.DryRun {
					appendID(rep, r.ID)
				} else if err := workflow.ExecuteActivity(actx, a.StartReplay, activities.StartReplayInput{QuarantineID: r.ID}).Get(ctx, nil); err != nil {
					addError(rep, err.Error())
				} else {
					rep.ReplaysStarted++
					appendID(rep, r.ID)
					if err := workflow.Sleep(ctx, pause); err != nil {
						return *rep, err
					}
				}
				st.AfterQuarantineID = r.ID
			}
			handled += len(rows)
			if len(rows) < in.PageSize {
				st.Phase++
			}
			continue
		}

		var page activities.ListPageResult
		if err := workflow.ExecuteActivity(actx, a.ListPage, activities.ListPageInput{
			Category: phase, Since: in.Since, Now: st.Now, StuckAfter: in.StuckAfter,
			PageSize: in.PageSize, PageToken: st.PageToken,
		}).Get(ctx, &page); err != nil {
			return *rep, err
		}
		for _, it := range page.Items {
			countCategory(rep, phase)
			if err := reconcileItem(ctx, actx, in.DryRun, pause, rep, it); err != nil {
				return *rep, err
			}
		}
		handled += len(page.Items)
		st.PageToken = page.NextPageToken
		if len(page.NextPageToken) == 0 {
			st.Phase++
		}
	}
	rep.FinishedAt = workflow.Now(ctx).UTC()
	return *rep, nil
}

func reconcileItem(ctx, actx workflow.Context, dryRun bool, pause time.Duration, rep *contract.ReconcileReport, it activities.ListedItem) error {
	switch it.Decision {
	case activities.DecisionCommitted:
		rep.Committed++
	case activities.DecisionQuarantined:
		rep.Quarantined++
	case activities.DecisionSuperseded:
		rep.Superseded++
	case activities.DecisionSkipped:
		rep.Skipped++
	case activities.DecisionError:
		addError(rep, it.WorkflowID+": "+it.Error)
	case activities.DecisionStuck:
		if it.Stuck != nil {
			if len(rep.StuckRecords) < contract.MaxReportStuck {
				rep.StuckRecords = append(rep.StuckRecords, *it.Stuck)
			} else {
				rep.StuckOmitted++
			}
		}
	case activities.DecisionRedrive:
		if dryRun {
			rep.WouldRedrive++
			appendKey(rep, it.Key)
			return nil
		}
		var a *activities.Activities
		var res activities.RedriveResult
		err := workflow.ExecuteActivity(actx, a.Redrive, activities.RedriveInput{
			Key: it.Key, WorkflowID: it.WorkflowID, RunID: it.RunID,
		}).Get(ctx, &res)
		if err != nil {
			addError(rep, it.WorkflowID+": "+err.Error())
			return nil
		}
		switch res.Decision {
		case activities.DecisionRedrive:
			rep.Redriven++
			appendKey(rep, it.Key)
			return workflow.Sleep(ctx, pause)
		case activities.DecisionCommitted:
			rep.Committed++
		case activities.DecisionQuarantined:
			rep.Quarantined++
		case activities.DecisionSuperseded:
			rep.Superseded++
		case activities.DecisionNoInput:
			rep.NoInput++
		}
	}
	return nil
}

func reconcileDefaults(in contract.ReconcileInput) contract.ReconcileInput {
	if in.RatePerSecond <= 0 {
		in.RatePerSecond = defaultReconcileRate
	}
	if in.StuckAfter <= 0 {
		in.StuckAfter = defaultStuckAfter
	}
	if in.PageSize <= 0 {
		in.PageSize = defaultReconcilePageSize
	}
	in.PageSize = min(in.PageSize, maxReconcilePageSize)
	if in.ItemsBeforeContinue <= 0 {
		in.ItemsBeforeContinue = defaultItemsBeforeContinue
	}
	return in
}

func countCategory(rep *contract.ReconcileReport, phase string) {
	switch phase {
	case activities.CategoryFailed:
		rep.Failed++
	case activities.CategoryTerminated:
		rep.Terminated++
	case activities.CategoryTimedOut:
		rep.TimedOut++
	case activities.CategoryCanceled:
		rep.Canceled++
	case activities.CategoryStuck:
		rep.Stuck++
	}
}

func appendKey(rep *contract.ReconcileReport, key string) {
	if len(rep.RedrivenKeys) < contract.MaxReportKeys {
		rep.RedrivenKeys = append(rep.RedrivenKeys, key)
	} else {
		rep.KeysOmitted++
	}
}

func appendID(rep *contract.ReconcileReport, id int64) {
	if len(rep.ReplayIDs) < contract.MaxReportKeys {
		rep.ReplayIDs = append(rep.ReplayIDs, id)
	}
}

func addError(rep *contract.ReconcileReport, msg string) {
	rep.Errors++
	if len(rep.ErrorSamples) < contract.MaxReportErrors {
		rep.ErrorSamples = append(rep.ErrorSamples, msg)
	}
}

// ReplayQuarantineWorkflow replays one quarantine row through the record
// workflow, after a code or data fix: it marks the row replay_requested,
// runs a record workflow (as a child, ID contract.ReplayRecordWorkflowID)
// with the row's body as its only delivery, and marks the row replayed when
// the record landed (inserted, duplicate or conflict) or back to
// quarantined when it was quarantined again. A row already replayed or
// discarded is left alone: replaying it again is a recorded no-op.
func ReplayQuarantineWorkflow(ctx workflow.Context, in contract.ReplayQuarantineInput) (contract.ReplayQuarantineResult, error) {
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         operatorRetry,
	})
	res := contract.ReplayQuarantineResult{QuarantineID: in.QuarantineID}
	var prep activities.PrepareReplayResult
	if err := workflow.ExecuteActivity(actx, a.PrepareReplay, in).Get(ctx, &prep); err != nil {
		return res, err
	}
	res.Key, res.Status = prep.Key, prep.Status
	if prep.AlreadyDone {
		res.AlreadyDone = true
		return res, nil
	}

	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            prep.RecordWorkflowID,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	child := workflow.ExecuteChildWorkflow(cctx, contract.RecordWorkflowName, contract.RecordInput{
		Key: prep.Key, Initial: []contract.Delivery{prep.Delivery},
	})
	var exec workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &exec); err != nil {
		return res, err
	}
	res.RecordWorkflowID, res.RecordRunID = exec.ID, exec.RunID
	var rec contract.RecordResult
	if err := child.Get(ctx, &rec); err != nil {
		return res, err
	}
	res.Outcome = rec.Outcome
	for _, m := range rec.Messages {
		if m.Outcome == contract.OutcomeQuarantined {
			res.Reason = m.Reason
		}
	}
	if err := workflow.ExecuteActivity(actx, a.FinishReplay, activities.FinishReplayInput{
		QuarantineID: in.QuarantineID, Outcome: rec.Outcome, Reason: res.Reason,
		RecordWorkflowID: exec.ID, RecordRunID: exec.RunID,
	}).Get(ctx, &res.Status); err != nil {
		return res, err
	}
	return res, nil
}
