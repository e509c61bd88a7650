package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// FloodNoticeWorkflow shows in the Web UI records that flood mode stored
// and acked in bulk but that need a person: a group's conflicts, or its
// quarantines. The database rows are the source of truth and nothing is
// left to do, so the run only holds the list: its SyncOutcome and SyncKeys
// search attributes are set by the starter (activities.Notices), which
// makes the run one start, one workflow task and its completion, five
// history events and one billable action for a whole group.
//
// It takes no signals: redeliveries go to their key's record workflow,
// never to a notice.
func FloodNoticeWorkflow(ctx workflow.Context, in contract.FloodNoticeInput) (contract.FloodNoticeResult, error) {
	return contract.FloodNoticeResult{Outcome: in.Outcome, Records: in.Records}, nil
}
