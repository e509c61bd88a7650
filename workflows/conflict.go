package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// ResolveConflictWorkflow settles one same-key/different-payload conflict,
// keeping the stored record or replacing it with the incoming version, in
// one database transaction (activities.ResolveConflict). Running it as a
// workflow (ID contract.ResolveConflictWorkflowID) records who resolved
// what and when; resolving a conflict that is no longer open is a no-op
// whose result says so.
func ResolveConflictWorkflow(ctx workflow.Context, in contract.ResolveConflictInput) (contract.ResolveConflictResult, error) {
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         operatorRetry,
	})
	var res contract.ResolveConflictResult
	err := workflow.ExecuteActivity(actx, a.ResolveConflict, in).Get(ctx, &res)
	return res, err
}
