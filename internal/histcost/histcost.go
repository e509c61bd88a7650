// Package histcost prices a workflow history the way Temporal Cloud bills
// it, so the project's claims about cost per record are counted from real
// histories rather than read off the code.
//
// The rules (docs.temporal.io/cloud/actions): a workflow start (client
// start, signal-with-start, continue-as-new, child start) is one action;
// every signal is one; every activity attempt is one; the local activities
// of one workflow task are one batch, one action; every timer is one; every
// UpsertSearchAttributes is one, except one that only writes
// TemporalChangeVersion; side effects and updates are one each. Search
// attributes given at start are free.
package histcost

import (
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
)

// Cost is what one history costs.
type Cost struct {
	Events  int
	Actions int
}

// Add sums costs.
func (c Cost) Add(o Cost) Cost {
	return Cost{Events: c.Events + o.Events, Actions: c.Actions + o.Actions}
}

const localActivityMarker = "LocalActivity"

// Of prices one run's history.
func Of(events []*historypb.HistoryEvent) Cost {
	c := Cost{Events: len(events)}
	laBatch := false // a local-activity marker seen since the last workflow task completed
	for _, ev := range events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			enumspb.EVENT_TYPE_TIMER_STARTED,
			enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
			enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			c.Actions++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			// Scheduled counted the first attempt; retries are billed too.
			if a := ev.GetActivityTaskStartedEventAttributes().GetAttempt(); a > 1 {
				c.Actions += int(a - 1)
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			laBatch = false
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			switch ev.GetMarkerRecordedEventAttributes().GetMarkerName() {
			case localActivityMarker:
				if !laBatch {
					c.Actions++
					laBatch = true
				}
			case "SideEffect", "MutableSideEffect":
				c.Actions++
			}
		case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			fields := ev.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()
			if _, onlyVersion := fields["TemporalChangeVersion"]; !(onlyVersion && len(fields) == 1) {
				c.Actions++
			}
		}
	}
	return c
}
