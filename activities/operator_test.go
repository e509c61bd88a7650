package activities

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func TestPrepareAndFinishReplay(t *testing.T) {
	a, st := newActs(t)
	a.Settings.WorkflowIDPrefix = "rec/"
	ctx := context.Background()
	id, err := st.Quarantine(ctx, store.QuarantineEntry{Key: "k1", MessageID: "m1", Tag: "SyncEvent", Reason: "bad_json", Body: []byte(good), ConsumedTimes: 3})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := run[PrepareReplayResult](t, a.PrepareReplay, contract.ReplayQuarantineInput{QuarantineID: id})
	if err != nil || prep.AlreadyDone || prep.Key != "k1" || prep.RecordWorkflowID != contract.ReplayRecordWorkflowID("rec/", "k1", id) ||
		prep.Delivery.MessageID != "m1" || string(prep.Delivery.Body) != good || prep.Delivery.ReceiptHandle != "" || prep.Delivery.ConsumedTimes != 3 {
		t.Fatalf("prepare: %+v %v", prep, err)
	}
	if q, _ := st.QuarantineByID(ctx, id); q.Status != store.QuarantineReplayRequested {
		t.Fatalf("status %s", q.Status)
	}
	status, err := run[string](t, a.FinishReplay, FinishReplayInput{QuarantineID: id, Outcome: contract.OutcomeInserted, RecordWorkflowID: "w", RecordRunID: "r"})
	if err != nil || status != store.QuarantineReplayed {
		t.Fatal(status, err)
	}
	prep, err = run[PrepareReplayResult](t, a.PrepareReplay, contract.ReplayQuarantineInput{QuarantineID: id})
	if err != nil || !prep.AlreadyDone || prep.Status != store.QuarantineReplayed {
		t.Fatalf("prepare of replayed row: %+v %v", prep, err)
	}
}

func TestReplayBadInputIsNotRetried(t *testing.T) {
	a, st := newActs(t)
	ctx := context.Background()
	noKey, _ := st.Quarantine(ctx, store.QuarantineEntry{MessageID: "m2", Reason: "missing_key", Body: []byte(good)})
	for _, id := range []int64{noKey, 9999} {
		_, err := run[PrepareReplayResult](t, a.PrepareReplay, contract.ReplayQuarantineInput{QuarantineID: id})
		var appErr *temporal.ApplicationError
		if _, _, ok := BadInputReason(err); !ok || !errors.As(err, &appErr) || !appErr.NonRetryable() {
			t.Fatalf("row %d: %v", id, err)
		}
	}
}

func TestResolveConflictActivity(t *testing.T) {
	a, st := newActs(t)
	ctx := context.Background()
	ev1, _ := syncevent.Parse("k", "m1", []byte(good))
	ev2, _ := syncevent.Parse("k", "m2", []byte(`{"patientData":{"patientId":"P-1","notes":"changed"},"deviceTimestamp":1732600000000}`))
	_, _ = st.Insert(ctx, ev1)
	_, _ = st.Insert(ctx, ev2)
	cs, _ := st.Conflicts(ctx, "k")
	res, err := run[contract.ResolveConflictResult](t, a.ResolveConflict, contract.ResolveConflictInput{Key: "k", ConflictID: cs[0].ID, Keep: contract.KeepIncoming})
	if err != nil || !res.Changed || res.Status != contract.ConflictStatusResolvedIncoming || res.ReplacedHash != ev1.Hash {
		t.Fatalf("%+v %v", res, err)
	}
	res, err = run[contract.ResolveConflictResult](t, a.ResolveConflict, contract.ResolveConflictInput{Key: "k", ConflictID: cs[0].ID, Keep: contract.KeepIncoming})
	if err != nil || res.Changed {
		t.Fatalf("again: %+v %v", res, err)
	}
	for _, in := range []contract.ResolveConflictInput{
		{Key: "k", ConflictID: cs[0].ID, Keep: "both"},
		{Key: "k", ConflictID: 999, Keep: contract.KeepExisting},
	} {
		if _, err := run[contract.ResolveConflictResult](t, a.ResolveConflict, in); err == nil {
			t.Fatalf("%+v accepted", in)
		} else if _, _, ok := BadInputReason(err); !ok {
			t.Fatalf("%+v: retryable error %v", in, err)
		}
	}
}

// Replay runs under the key exactly as sent, or not at all.
func TestReplayUsesTheExactKey(t *testing.T) {
	a, st := newActs(t)
	a.Settings.WorkflowIDPrefix = "rec/"
	ctx := context.Background()
	long := strings.Repeat("k", 300) // over the 128-character readable copy
	id, err := st.Quarantine(ctx, store.QuarantineEntry{Key: long, MessageID: "m-long", Reason: "field_too_long", Body: []byte(good)})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := run[PrepareReplayResult](t, a.PrepareReplay, contract.ReplayQuarantineInput{QuarantineID: id})
	if err != nil || prep.Key != long || prep.RecordWorkflowID != contract.ReplayRecordWorkflowID("rec/", long, id) {
		t.Fatalf("prepare: key %d bytes, %v", len(prep.Key), err)
	}
	// A row written before raw keys were kept, whose key may have been cut.
	old, err := st.Quarantine(ctx, store.QuarantineEntry{Key: strings.Repeat("o", 200), MessageID: "m-old", Reason: "field_too_long", Body: []byte(good)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, "UPDATE sync_quarantine SET raw_key = NULL WHERE id = ?", old); err != nil {
		t.Fatal(err)
	}
	_, err = run[PrepareReplayResult](t, a.PrepareReplay, contract.ReplayQuarantineInput{QuarantineID: old})
	if reason, _, ok := BadInputReason(err); !ok || reason != "key_not_exact" {
		t.Fatalf("replay of a row with a cut key: %v", err)
	}
}
