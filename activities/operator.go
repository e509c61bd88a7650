package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

// Operator activities: quarantine replay and conflict resolution, run by
// the workflows the starter binary starts, so every change an operator
// makes is recorded in Temporal history as well as in the database.

// PrepareReplayResult is what a replay needs: the row's key and its
// (possibly operator-fixed) body as a delivery without a receipt handle.
type PrepareReplayResult struct {
	// AlreadyDone is set when the row was replayed or discarded: the
	// replay is a no-op.
	AlreadyDone bool
	Status      string
	Key         string
	// RecordWorkflowID is the ID of the record run that replays the body.
	RecordWorkflowID string
	Delivery         contract.Delivery
}

// PrepareReplay marks a quarantine row replay_requested (if it is not
// already) and returns what the record workflow needs to replay it.
func (a *Activities) PrepareReplay(ctx context.Context, in contract.ReplayQuarantineInput) (PrepareReplayResult, error) {
	note := "replay by workflow " + activity.GetInfo(ctx).WorkflowExecution.ID
	item, changed, err := a.Store.RequestReplay(ctx, in.QuarantineID, note)
	if errors.Is(err, store.ErrNotFound) {
		return PrepareReplayResult{}, badInput("not_found", fmt.Sprintf("no quarantine row %d", in.QuarantineID))
	}
	if err != nil {
		return PrepareReplayResult{}, fmt.Errorf("prepare replay of quarantine row %d: %s", in.QuarantineID, describeDBError(err))
	}
	res := PrepareReplayResult{Status: item.Status, Key: item.Key}
	if !changed {
		res.AlreadyDone = true
		return res, nil
	}
	if item.Key == "" {
		return res, badInput("no_key", fmt.Sprintf("quarantine row %d has no key: it cannot be replayed (discard it)", in.QuarantineID))
	}
	// A replay under a cut or altered key would file the record under an
	// ID the device never sent.
	key, exact := item.ExactKey()
	if !exact {
		return res, badInput("key_not_exact", fmt.Sprintf("quarantine row %d kept only a cut or altered copy of its key: it cannot be replayed exactly (discard it)", in.QuarantineID))
	}
	res.Key = key
	res.RecordWorkflowID = contract.ReplayRecordWorkflowID(a.Settings.WorkflowIDPrefix, key, item.ID)
	res.Delivery = contract.Delivery{
		MessageID:     item.MessageID,
		Tag:           item.Tag,
		Body:          item.Body,
		ConsumedTimes: item.ConsumedTimes,
	}
	return res, nil
}

// FinishReplayInput reports a replay's record outcome.
type FinishReplayInput struct {
	QuarantineID     int64
	Outcome          contract.Outcome
	Reason           string // new quarantine reason, if quarantined again
	RecordWorkflowID string
	RecordRunID      string
}

// FinishReplay marks the row replayed when the record landed (inserted,
// duplicate or conflict) or back to quarantined when the replay was
// quarantined again, and returns the row's status.
func (a *Activities) FinishReplay(ctx context.Context, in FinishReplayInput) (string, error) {
	landed := in.Outcome == contract.OutcomeInserted || in.Outcome == contract.OutcomeDuplicate || in.Outcome == contract.OutcomeConflict
	var note string
	if landed {
		note = fmt.Sprintf("replayed: %s by %s run %s", in.Outcome, in.RecordWorkflowID, in.RecordRunID)
	} else {
		note = fmt.Sprintf("replay quarantined again (%s) by %s run %s", in.Reason, in.RecordWorkflowID, in.RecordRunID)
	}
	status, err := a.Store.FinishReplay(ctx, in.QuarantineID, landed, note)
	if errors.Is(err, store.ErrNotFound) {
		return "", badInput("not_found", fmt.Sprintf("no quarantine row %d", in.QuarantineID))
	}
	if err != nil {
		return "", fmt.Errorf("finish replay of quarantine row %d: %s", in.QuarantineID, describeDBError(err))
	}
	return status, nil
}

// ResolveConflict settles a conflict in one transaction (see
// store.ResolveConflict). Resolving an already resolved conflict changes
// nothing and reports Changed false.
func (a *Activities) ResolveConflict(ctx context.Context, in contract.ResolveConflictInput) (contract.ResolveConflictResult, error) {
	if in.Keep != contract.KeepExisting && in.Keep != contract.KeepIncoming {
		return contract.ResolveConflictResult{}, badInput("bad_keep", fmt.Sprintf("keep must be %q or %q", contract.KeepExisting, contract.KeepIncoming))
	}
	r, err := a.Store.ResolveConflict(ctx, in.Key, in.ConflictID, in.Keep == contract.KeepIncoming)
	if errors.Is(err, store.ErrNotFound) {
		return contract.ResolveConflictResult{}, badInput("not_found", fmt.Sprintf("conflict %d of key %s, or its stored record, does not exist", in.ConflictID, in.Key))
	}
	if err != nil {
		if store.IsBadData(err) {
			return contract.ResolveConflictResult{}, badInput("resolve_failed", fmt.Sprintf("resolve conflict %d: %s", in.ConflictID, describeDBError(err)))
		}
		return contract.ResolveConflictResult{}, fmt.Errorf("resolve conflict %d: %s", in.ConflictID, describeDBError(err))
	}
	if r.Changed {
		activity.GetLogger(ctx).Info("conflict resolved", "key", in.Key, "conflictId", in.ConflictID, "status", r.Status)
	}
	return contract.ResolveConflictResult{
		Key: in.Key, ConflictID: in.ConflictID, Status: r.Status, Changed: r.Changed, ReplacedHash: r.ReplacedHash,
	}, nil
}
