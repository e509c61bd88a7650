package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// Register registers every workflow under its fixed contract name. Workers
// and history replayers share this one list, so a workflow added here is
// both served and replay-tested.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(RecordWorkflow, workflow.RegisterOptions{Name: contract.RecordWorkflowName})
	r.RegisterWorkflowWithOptions(RecordWorkflowV2, workflow.RegisterOptions{Name: contract.RecordWorkflowV2Name})
	r.RegisterWorkflowWithOptions(PollerWorkflow, workflow.RegisterOptions{Name: contract.PollerWorkflowName})
	r.RegisterWorkflowWithOptions(ReconcileWorkflow, workflow.RegisterOptions{Name: contract.ReconcileWorkflowName})
	r.RegisterWorkflowWithOptions(ReplayQuarantineWorkflow, workflow.RegisterOptions{Name: contract.ReplayQuarantineWorkflowName})
	r.RegisterWorkflowWithOptions(ResolveConflictWorkflow, workflow.RegisterOptions{Name: contract.ResolveConflictWorkflowName})
	r.RegisterWorkflowWithOptions(FloodNoticeWorkflow, workflow.RegisterOptions{Name: contract.FloodNoticeWorkflowName})
}
