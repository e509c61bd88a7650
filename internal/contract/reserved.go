package contract

import "strings"

// Record workflow IDs are built from message keys, which devices choose, so
// a key could name one of the project's own workflows: a key equal to a
// poller's ID was "handed over" to the poller, which ignored it, until the
// broker dead-lettered the message.
//
// The fix is to refuse such keys (quarantine, reason key_reserved) rather
// than to move the project's own IDs into a namespace keys cannot reach:
//   - keys are free-form strings, so no readable prefix is out of their
//     reach; only a character the key parser refuses (a control character)
//     would be, and that would make every ID unreadable in the Web UI and
//     the starter's arguments;
//   - the poller and reconcile IDs are fixed so that a fleet converges on
//     one set of them; renaming them would, during a rolling deploy, run
//     old and new pollers side by side and allow two reconciliations.
//
// Device record IDs never look like these in practice, so the refusal
// costs nothing real, and it is decided on the full workflow ID: with a
// SYNCBRIDGE_WORKFLOW_ID_PREFIX no key can reach the prefixed forms at all.
var reservedPrefixes = []string{
	"poller-",            // PollerWorkflowID
	"syncbridge-",        // ReconcileWorkflowID, and room for more
	"replay-quarantine-", // ReplayQuarantineWorkflowID
	"resolve-conflict-",  // ResolveConflictWorkflowID
}

// IsReservedWorkflowID reports whether id, a record workflow ID, could
// collide with one of the project's own workflow IDs: it starts like one,
// or it contains the marker of a quarantine replay's record run (which
// reconciliation also skips, so such a record would never be re-driven).
func IsReservedWorkflowID(id string) bool {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return IsReplayRecordWorkflowID(id)
}
