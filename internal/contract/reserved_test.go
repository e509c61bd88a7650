package contract

import "testing"

func TestOwnWorkflowIDsAreReserved(t *testing.T) {
	own := []string{
		PollerWorkflowID("patient-sync", "GID_syncbridge", 0),
		PollerWorkflowID("t", "g", 12),
		ReconcileWorkflowID,
		ReplayQuarantineWorkflowID(42),
		ResolveConflictWorkflowID("rec-1", 7),
		ReplayRecordWorkflowID("", "rec-1", 3),
		ReplayRecordWorkflowID("pfx/", "rec-1", 3),
	}
	for _, id := range own {
		if !IsReservedWorkflowID(id) {
			t.Errorf("own workflow ID %q is not reserved: a key equal to it would collide", id)
		}
	}
	for _, key := range []string{"rec-1", "device-7/poller-1", "pollers", "SYNCBRIDGE-1", "replay-1", "a#replay"} {
		if IsReservedWorkflowID(RecordWorkflowID("", key)) {
			t.Errorf("ordinary key %q reserved", key)
		}
	}
	// With a prefix, keys cannot reach the project's own IDs.
	if IsReservedWorkflowID(RecordWorkflowID("rec/", PollerWorkflowID("t", "g", 0))) {
		t.Error("prefixed record ID reserved")
	}
}
