package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

// Reconciliation activities. Listing, checking and re-driving happen here;
// the reconcile workflow only paces them and keeps the report.
//
// A re-drive starts a new run of the record workflow from the old run's
// own recorded input: the payloads of its WorkflowExecutionStarted event
// and of its delivery signals, sent back to the server exactly as they are
// stored. They are never decoded here, so encrypted payloads stay
// encrypted and no patient data passes through this process.

// Record categories, in the order the reconcile workflow visits them.
const (
	CategoryFailed     = "failed"
	CategoryTerminated = "terminated"
	CategoryTimedOut   = "timed_out"
	CategoryCanceled   = "canceled"
	CategoryStuck      = "stuck"
)

var categoryStatus = map[string]string{
	CategoryFailed:     "Failed",
	CategoryTerminated: "Terminated",
	CategoryTimedOut:   "TimedOut",
	CategoryCanceled:   "Canceled",
	CategoryStuck:      "Running",
}

// Item decisions.
const (
	DecisionRedrive     = "redrive"
	DecisionCommitted   = "committed"
	DecisionQuarantined = "quarantined"
	DecisionSuperseded  = "superseded"
	DecisionSkipped     = "skipped"
	DecisionNoInput     = "no_input"
	DecisionStuck       = "stuck"
	DecisionError       = "error"
)

// redriveStartDelay holds back a re-driven run's first workflow task while
// its recorded deliveries are signalled in, so one run takes them all.
const redriveStartDelay = time.Second

// ListPageInput asks for one page of one category.
type ListPageInput struct {
	Category   string
	Since      time.Time
	Now        time.Time // with StuckAfter, the stuck threshold
	StuckAfter time.Duration
	PageSize   int
	PageToken  []byte
}

// ListedItem is one listed execution and what the check decided.
type ListedItem struct {
	Key        string
	WorkflowID string
	RunID      string
	Decision   string
	Stuck      *contract.StuckRecord `json:",omitempty"`
	Error      string                `json:",omitempty"`
}

// ListPageResult is one page; NextPageToken is empty after the last.
type ListPageResult struct {
	Items         []ListedItem
	NextPageToken []byte
}

// ListPage lists one page of record workflows in a category and checks each
// against Temporal (is it the latest run?) and the database (is it
// committed?). It changes nothing.
func (a *Activities) ListPage(ctx context.Context, in ListPageInput) (ListPageResult, error) {
	status, ok := categoryStatus[in.Category]
	if !ok {
		return ListPageResult{}, badInput("bad_category", "unknown reconcile category "+in.Category)
	}
	q := fmt.Sprintf("%s AND TaskQueue = '%s' AND ExecutionStatus = '%s'",
		contract.RecordTypesQuery, a.Settings.TaskQueue, status)
	if in.Category == CategoryStuck {
		q += " AND StartTime <= '" + in.Now.Add(-in.StuckAfter).UTC().Format(time.RFC3339Nano) + "'"
		if !in.Since.IsZero() {
			q += " AND StartTime >= '" + in.Since.UTC().Format(time.RFC3339Nano) + "'"
		}
	} else if !in.Since.IsZero() {
		q += " AND CloseTime >= '" + in.Since.UTC().Format(time.RFC3339Nano) + "'"
	}
	resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: int32(in.PageSize), NextPageToken: in.PageToken, Query: q,
	})
	if err != nil {
		return ListPageResult{}, fmt.Errorf("list %s records: %w", in.Category, err)
	}
	out := ListPageResult{NextPageToken: resp.GetNextPageToken()}
	for _, ex := range resp.GetExecutions() {
		activity.RecordHeartbeat(ctx, len(out.Items))
		it := ListedItem{WorkflowID: ex.GetExecution().GetWorkflowId(), RunID: ex.GetExecution().GetRunId()}
		if !strings.HasPrefix(it.WorkflowID, a.Settings.WorkflowIDPrefix) || contract.IsReplayRecordWorkflowID(it.WorkflowID) {
			it.Decision = DecisionSkipped
			out.Items = append(out.Items, it)
			continue
		}
		it.Key = contract.KeyFromWorkflowID(a.Settings.WorkflowIDPrefix, it.WorkflowID)
		if in.Category == CategoryStuck {
			a.describeStuck(ctx, &it, ex.GetStartTime().AsTime())
		} else {
			a.checkClosed(ctx, &it)
		}
		out.Items = append(out.Items, it)
	}
	return out, nil
}

func (a *Activities) describeStuck(ctx context.Context, it *ListedItem, started time.Time) {
	it.Decision = DecisionStuck
	sr := &contract.StuckRecord{Key: it.Key, WorkflowID: it.WorkflowID, RunID: it.RunID, StartTime: started.UTC()}
	it.Stuck = sr
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, it.WorkflowID, it.RunID)
	if err != nil {
		sr.LastFailure = "describe failed: " + err.Error()
		return
	}
	for _, pa := range d.GetPendingActivities() {
		sr.PendingActivity = pa.GetActivityType().GetName()
		sr.Attempt = pa.GetAttempt()
		sr.LastFailure = failureText(a.Temporal, pa.GetLastFailure())
		break
	}
}

// checkClosed decides what to do with a closed, unsuccessful run.
func (a *Activities) checkClosed(ctx context.Context, it *ListedItem) {
	latest, err := a.Temporal.DescribeWorkflowExecution(ctx, it.WorkflowID, "")
	if err != nil {
		it.Decision, it.Error = DecisionError, "describe: "+err.Error()
		return
	}
	if latest.GetWorkflowExecutionInfo().GetExecution().GetRunId() != it.RunID {
		// A newer run (the poller's, or an earlier re-drive) owns the
		// key; if it failed too, it is listed on its own.
		it.Decision = DecisionSuperseded
		return
	}
	st, err := a.Store.KeyState(ctx, it.Key)
	if err != nil {
		it.Decision, it.Error = DecisionError, "database: "+describeDBError(err)
		return
	}
	switch {
	case st.Stored:
		it.Decision = DecisionCommitted
	case st.Quarantined:
		it.Decision = DecisionQuarantined
	default:
		it.Decision = DecisionRedrive
	}
}

// RedriveInput names the run to re-drive.
type RedriveInput struct {
	Key, WorkflowID, RunID string
}

// RedriveResult reports the re-drive.
type RedriveResult struct {
	// Decision is DecisionRedrive when a new run was started; otherwise
	// why not (committed meanwhile, superseded, no input).
	Decision   string
	NewRunID   string `json:",omitempty"`
	Deliveries int
}

// Redrive starts a new run of a failed, terminated, timed-out or canceled
// record from its recorded input, after checking again that the run is
// still the latest and its key still uncommitted.
func (a *Activities) Redrive(ctx context.Context, in RedriveInput) (RedriveResult, error) {
	it := ListedItem{Key: in.Key, WorkflowID: in.WorkflowID, RunID: in.RunID}
	a.checkClosed(ctx, &it)
	if it.Decision == DecisionError {
		return RedriveResult{}, errors.New(it.Error)
	}
	if it.Decision != DecisionRedrive {
		return RedriveResult{Decision: it.Decision}, nil
	}
	rec, err := a.recordedInput(ctx, in.WorkflowID, in.RunID)
	if err != nil {
		return RedriveResult{}, err
	}
	if len(rec.deliveries) == 0 && !rec.hasInitial {
		return RedriveResult{Decision: DecisionNoInput}, nil
	}
	info := activity.GetInfo(ctx)
	ns := info.WorkflowNamespace
	identity := "reconcile:" + info.WorkflowExecution.ID
	// Stable across retries of this activity, so a retried start or
	// signal is deduplicated by the server instead of repeated.
	requestID := func(i int) string {
		return fmt.Sprintf("%s/%s/%d", info.WorkflowExecution.RunID, info.ActivityID, i)
	}
	svc := a.Temporal.WorkflowService()
	res := RedriveResult{Decision: DecisionRedrive, Deliveries: len(rec.deliveries)}

	if len(rec.deliveries) == 0 {
		resp, err := svc.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
			Namespace: ns, WorkflowId: in.WorkflowID, WorkflowType: rec.wfType, TaskQueue: rec.taskQueue,
			Input: rec.input, Identity: identity, RequestId: requestID(0),
			WorkflowIdReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		})
		if err != nil {
			return a.redriveStartFailed(err)
		}
		res.NewRunID = resp.GetRunId()
		return res, nil
	}

	for i, d := range rec.deliveries {
		req := &workflowservice.SignalWithStartWorkflowExecutionRequest{
			Namespace: ns, WorkflowId: in.WorkflowID, WorkflowType: rec.wfType, TaskQueue: rec.taskQueue,
			Input: rec.input, Identity: identity, RequestId: requestID(i),
			SignalName: contract.SignalDelivery, SignalInput: d,
			WorkflowIdConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		}
		if i == 0 {
			// Only a failed, terminated, timed-out or canceled last run
			// may be replaced; a completed one means the key is done.
			req.WorkflowIdReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
			if len(rec.deliveries) > 1 {
				req.WorkflowStartDelay = durationpb.New(redriveStartDelay)
			}
		} else {
			// Joins the new run; should it have finished already, the
			// delivery gets a run of its own (inserts are idempotent).
			req.WorkflowIdReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
		}
		resp, err := svc.SignalWithStartWorkflowExecution(ctx, req)
		if err != nil {
			if i == 0 {
				return a.redriveStartFailed(err)
			}
			return res, fmt.Errorf("re-drive %s: signal delivery %d of %d: %w", in.WorkflowID, i+1, len(rec.deliveries), err)
		}
		if i == 0 {
			res.NewRunID = resp.GetRunId()
		}
		activity.RecordHeartbeat(ctx, i)
	}
	activity.GetLogger(ctx).Info("record re-driven", "workflowId", in.WorkflowID, "oldRun", in.RunID,
		"newRun", res.NewRunID, "deliveries", len(rec.deliveries))
	return res, nil
}

func (a *Activities) redriveStartFailed(err error) (RedriveResult, error) {
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		// Someone (the poller) started or completed a newer run first.
		return RedriveResult{Decision: DecisionSuperseded}, nil
	}
	return RedriveResult{}, fmt.Errorf("re-drive: start: %w", err)
}

// recorded is a run's input as stored in its history.
type recorded struct {
	wfType     *commonpb.WorkflowType
	taskQueue  *taskqueuepb.TaskQueue
	input      *commonpb.Payloads
	hasInitial bool
	deliveries []*commonpb.Payloads
}

func (a *Activities) recordedInput(ctx context.Context, workflowID, runID string) (recorded, error) {
	var rec recorded
	iter := a.Temporal.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for n := 0; iter.HasNext(); n++ {
		ev, err := iter.Next()
		if err != nil {
			return rec, fmt.Errorf("read history of %s/%s: %w", workflowID, runID, err)
		}
		if n%500 == 0 {
			activity.RecordHeartbeat(ctx, n)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			at := ev.GetWorkflowExecutionStartedEventAttributes()
			rec.wfType, rec.taskQueue, rec.input = at.GetWorkflowType(), at.GetTaskQueue(), at.GetInput()
			// Initial deliveries cannot be seen without decoding; a
			// started-with-input run that got no signal is re-driven
			// as well (an empty input only re-runs an empty record).
			rec.hasInitial = hasInitialDeliveries(at)
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			at := ev.GetWorkflowExecutionSignaledEventAttributes()
			if at.GetSignalName() == contract.SignalDelivery {
				rec.deliveries = append(rec.deliveries, at.GetInput())
			}
		}
	}
	if rec.wfType == nil {
		return rec, fmt.Errorf("history of %s/%s has no start event", workflowID, runID)
	}
	// Start on the task queue the record ran on, not whatever the event
	// carries for sticky execution.
	rec.taskQueue = &taskqueuepb.TaskQueue{Name: rec.taskQueue.GetName(), Kind: enumspb.TASK_QUEUE_KIND_NORMAL}
	return rec, nil
}

// hasInitialDeliveries reports whether a start event's input may hold
// Initial deliveries. The poller starts records by signal-with-start with
// no Initial; only re-drives of runs started with Initial (replays, hand
// starts) carry them. Without decoding, a non-trivial input is assumed to.
func hasInitialDeliveries(at *historypb.WorkflowExecutionStartedEventAttributes) bool {
	for _, p := range at.GetInput().GetPayloads() {
		if len(p.GetData()) > 0 && strings.Contains(string(p.GetData()), `"Initial":[{`) {
			return true
		}
		// Encrypted payloads: unknown, assume yes.
		if string(p.GetMetadata()["encoding"]) != "json/plain" {
			return true
		}
	}
	return false
}

// ReplayRequestedInput pages through replay_requested quarantine rows.
type ReplayRequestedInput struct {
	AfterID int64
	Limit   int
}

// ReplayRequestedRow is one row to replay.
type ReplayRequestedRow struct {
	ID  int64
	Key string
}

// ListReplayRequested returns quarantine rows marked for replay.
func (a *Activities) ListReplayRequested(ctx context.Context, in ReplayRequestedInput) ([]ReplayRequestedRow, error) {
	rows, err := a.Store.ListQuarantine(ctx, store.QuarantineFilter{
		Status: store.QuarantineReplayRequested, AfterID: in.AfterID, Limit: in.Limit, WithoutBody: true,
	})
	if err != nil {
		return nil, fmt.Errorf("list replay-requested quarantine rows: %s", describeDBError(err))
	}
	out := make([]ReplayRequestedRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, ReplayRequestedRow{ID: r.ID, Key: r.Key})
	}
	return out, nil
}

// StartReplayInput names a quarantine row to replay.
type StartReplayInput struct {
	QuarantineID int64
}

// StartReplay starts (or finds running) the replay workflow of a
// quarantine row and returns its run ID. It does not wait for it.
func (a *Activities) StartReplay(ctx context.Context, in StartReplayInput) (string, error) {
	run, err := a.Temporal.ExecuteWorkflow(ctx, ReplayStartOptions(a.Settings.TaskQueue, in.QuarantineID),
		contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: in.QuarantineID})
	if err != nil {
		return "", fmt.Errorf("start replay of quarantine row %d: %w", in.QuarantineID, err)
	}
	return run.GetRunID(), nil
}

// ReplayStartOptions are the start options of a quarantine replay, shared
// by the starter and reconciliation: one workflow ID per row; a running
// replay is joined, a finished one may run again (it is then a recorded
// no-op unless the row went back to quarantined).
func ReplayStartOptions(taskQueue string, id int64) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       contract.ReplayQuarantineWorkflowID(id),
		TaskQueue:                taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
}
