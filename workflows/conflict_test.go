package workflows

import (
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/syncbridge/syncbridge/internal/contract"
)

func TestResolveConflictWorkflow(t *testing.T) {
	env, a := newOperatorEnv(t)
	in := contract.ResolveConflictInput{Key: "k", ConflictID: 3, Keep: contract.KeepIncoming}
	env.OnActivity(a.ResolveConflict, mock.Anything, in).
		Return(contract.ResolveConflictResult{Key: "k", ConflictID: 3, Status: contract.ConflictStatusResolvedIncoming, Changed: true}, nil)
	env.ExecuteWorkflow(contract.ResolveConflictWorkflowName, in)
	require.NoError(t, env.GetWorkflowError())
	var res contract.ResolveConflictResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Changed)
	require.Equal(t, contract.ConflictStatusResolvedIncoming, res.Status)
}

func TestResolveConflictWorkflowFailsOnBadInput(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.ResolveConflict, mock.Anything, mock.Anything).Return(contract.ResolveConflictResult{}, errBadInput("not_found")).Once()
	env.ExecuteWorkflow(contract.ResolveConflictWorkflowName, contract.ResolveConflictInput{Key: "k", ConflictID: 9, Keep: contract.KeepExisting})
	require.Error(t, env.GetWorkflowError()) // not retried: one call
}
