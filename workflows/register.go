package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// Versioning behaviours, used when workers join a Worker Deployment
// (SYNCBRIDGE_VERSIONING; unversioned workers ignore them).
//
// Pinned: every task of an execution runs on the build that started it,
// so a new build may change the workflow's shape freely and an old build
// is drained once its pinned executions closed. Right for workflows that
// live seconds to minutes: records, quarantine replays, conflict
// resolutions.
//
// Auto-upgrade: the execution's next task runs on the deployment's current
// build. Right for the poller and reconciliation, which live for hours
// and continue as new: pinned, they would hold their old build (a poller
// forever, since continue-as-new keeps the pin) and the old build would
// never drain. The price is that their shape changes must stay replay-safe
// across builds (workflow.GetVersion, replay tests over recorded
// histories), as before versioning; both are small loops around
// activities and rarely change.
const (
	shortLived = workflow.VersioningBehaviorPinned
	longLived  = workflow.VersioningBehaviorAutoUpgrade
)

// RecordFunc is the lean record workflow's signature.
type RecordFunc func(workflow.Context, contract.RecordInput) (contract.RecordResult, error)

// Register registers every workflow under its fixed contract name with its
// versioning behaviour. Workers and history replayers share this one list,
// so a workflow added here is both served and replay-tested.
func Register(r worker.WorkflowRegistry) { RegisterWithRecord(r, RecordWorkflowV2) }

// RegisterWithRecord is Register with record serving under
// contract.RecordWorkflowV2Name: tests use it to stand up a build whose
// record workflow is incompatible with this one's histories.
func RegisterWithRecord(r worker.WorkflowRegistry, record RecordFunc) {
	reg := func(fn any, name string, b workflow.VersioningBehavior) {
		r.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: name, VersioningBehavior: b})
	}
	reg(RecordWorkflow, contract.RecordWorkflowName, shortLived)
	reg(record, contract.RecordWorkflowV2Name, shortLived)
	reg(PollerWorkflow, contract.PollerWorkflowName, longLived)
	reg(ReconcileWorkflow, contract.ReconcileWorkflowName, longLived)
	reg(ReplayQuarantineWorkflow, contract.ReplayQuarantineWorkflowName, shortLived)
	reg(ResolveConflictWorkflow, contract.ResolveConflictWorkflowName, shortLived)
	// A notice completes in its first task.
	reg(FloodNoticeWorkflow, contract.FloodNoticeWorkflowName, shortLived)
}
