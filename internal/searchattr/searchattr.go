// Package searchattr names the custom Temporal search attributes the pipeline
// writes, so the dev stack, the tests and the production registration commands
// all register the same set.
package searchattr

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Keys written by the record workflow. Stuck records need no attribute of
// their own: a running record with a failing activity shows as a pending
// activity with its last error. Values are never patient data: only
// pipeline states, so they are safe to index and to show in the Web UI.
var (
	// Outcome is the terminal result of a record: inserted, duplicate,
	// conflict or quarantined. Empty while the record is in flight.
	Outcome = temporal.NewSearchAttributeKeyKeyword("SyncOutcome")
	// Keys lists the message keys (device record IDs) a flood notice
	// shows (workflows.FloodNoticeWorkflow), so `SyncKeys = 'rec-1'`
	// finds the notice of one record among those of its group.
	Keys = temporal.NewSearchAttributeKeyKeywordList("SyncKeys")
)

// All returns every custom attribute with its index type, for registration
// with the operator service.
func All() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		Outcome.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		Keys.GetName():    enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST,
	}
}
