package contract

import (
	"strconv"
	"strings"
	"time"
)

// Operator workflows, started by the starter binary and run by the
// workers. Their names are fixed for the same reason as the pipeline's.
const (
	ReconcileWorkflowName        = "ReconcileWorkflow"
	ReplayQuarantineWorkflowName = "ReplayQuarantineWorkflow"
	ResolveConflictWorkflowName  = "ResolveConflictWorkflow"

	// ReconcileWorkflowID is fixed so that only one reconciliation runs
	// per namespace at a time: a second start fails with AlreadyStarted.
	ReconcileWorkflowID = "syncbridge-reconcile"

	// QueryReconcileProgress returns the ReconcileReport so far.
	QueryReconcileProgress = "progress"

	// Quarantine row statuses (the sync_quarantine status column).
	QuarantineStatusQuarantined     = "quarantined"
	QuarantineStatusReplayRequested = "replay_requested"
	QuarantineStatusReplayed        = "replayed"
	QuarantineStatusDiscarded       = "discarded"

	// Conflict statuses (the sync_conflicts status column).
	ConflictStatusOpen                 = "open"
	ConflictStatusResolvedKeepExisting = "resolved_keep_existing"
	ConflictStatusResolvedIncoming     = "resolved_incoming"

	// KeepExisting and KeepIncoming are the two ways to settle a conflict.
	KeepExisting = "existing"
	KeepIncoming = "incoming"

	// replaySeparator marks a replay's record workflow ID: the key's
	// original workflow completed (it quarantined the message), so a
	// replay needs an ID of its own.
	replaySeparator = "#replay-"
)

// ReplayQuarantineWorkflowID is the ID of the workflow replaying quarantine
// row id. One per row: a second replay of the same row attaches to the
// running one or, once it is done, is a recorded no-op.
func ReplayQuarantineWorkflowID(id int64) string {
	return "replay-quarantine-" + strconv.FormatInt(id, 10)
}

// ReplayRecordWorkflowID is the record workflow a replay runs as its child.
func ReplayRecordWorkflowID(prefix, key string, id int64) string {
	return RecordWorkflowID(prefix, key) + replaySeparator + strconv.FormatInt(id, 10)
}

// IsReplayRecordWorkflowID reports whether a record workflow ID belongs to a
// quarantine replay rather than to a key's own pipeline run.
func IsReplayRecordWorkflowID(id string) bool {
	return strings.Contains(id, replaySeparator)
}

// ResolveConflictWorkflowID makes resolving one conflict idempotent and
// easy to find in the Web UI.
func ResolveConflictWorkflowID(key string, conflictID int64) string {
	return "resolve-conflict-" + key + "-" + strconv.FormatInt(conflictID, 10)
}

// ReconcileInput starts (or continues) a reconciliation. The starter fills
// the options; the workflow fills State when it continues as new.
type ReconcileInput struct {
	// Since limits the records looked at to those closed (or, for stuck
	// ones, started) at or after it. Zero means everything visibility
	// still holds.
	Since time.Time
	// DryRun lists and checks but starts nothing.
	DryRun bool
	// RatePerSecond caps re-drives and replay starts. Zero means 10.
	RatePerSecond float64
	// StuckAfter is how long a running record may run before it is
	// reported as stuck. Zero means 15 minutes.
	StuckAfter time.Duration
	// PageSize is how many executions one listing activity handles. Zero
	// means 100.
	PageSize int
	// ItemsBeforeContinue bounds history: after this many listed items the
	// workflow continues as new, carrying the report. Zero means 1000.
	ItemsBeforeContinue int

	State ReconcileState
}

// ReconcileState is the cursor carried across continue-as-new.
type ReconcileState struct {
	// Phase indexes the categories in order: failed, terminated,
	// timed out, canceled, stuck, quarantine replays.
	Phase     int
	PageToken []byte
	// AfterQuarantineID is the quarantine cursor.
	AfterQuarantineID int64
	// Now is the workflow's start time, fixed for the whole run so the
	// stuck threshold does not move across continue-as-new.
	Now    time.Time
	Report ReconcileReport
}

// ReconcileReport is the reconciliation's result, printed by the starter
// and shown in the Web UI. Keys are device record IDs, never patient data.
type ReconcileReport struct {
	DryRun     bool
	Since      time.Time `json:",omitzero"`
	StartedAt  time.Time
	FinishedAt time.Time `json:",omitzero"`
	// Runs counts this workflow's runs (1 + continue-as-new count).
	Runs int

	// Listed executions per category.
	Failed, Terminated, TimedOut, Canceled, Stuck int

	// What happened to the listed closed records.
	Committed    int // a row for the key exists: left alone
	Quarantined  int // the key's message is in quarantine: left alone
	Superseded   int // a newer run of the workflow exists: left alone
	Redriven     int // a new run was started from the recorded input
	WouldRedrive int // dry run: would have been re-driven
	NoInput      int // the run recorded no delivery: nothing to re-drive
	Skipped      int // not a pipeline record (replay runs, other prefixes)
	Errors       int // checking or re-driving failed; see ErrorSamples

	// RedrivenKeys lists re-driven (or, on a dry run, to-be-re-driven)
	// keys, at most MaxReportKeys; KeysOmitted counts the rest.
	RedrivenKeys []string
	KeysOmitted  int
	// StuckRecords are running records older than StuckAfter, with what
	// they are waiting on. At most MaxReportStuck.
	StuckRecords []StuckRecord
	StuckOmitted int

	// Quarantine rows marked replay_requested: replays started (or, on a
	// dry run, that would be).
	ReplaysRequested int
	ReplaysStarted   int
	ReplayIDs        []int64

	ErrorSamples []string
}

// Report size caps, so the result stays readable and history bounded.
const (
	MaxReportKeys   = 1000
	MaxReportStuck  = 200
	MaxReportErrors = 20
)

// StuckRecord is a running record that has run longer than the threshold.
type StuckRecord struct {
	Key        string
	WorkflowID string
	RunID      string
	StartTime  time.Time
	// PendingActivity is the activity the record waits on ("" if none,
	// e.g. no worker has picked up its workflow task).
	PendingActivity string
	Attempt         int32
	LastFailure     string
}

// ReplayQuarantineInput names the quarantine row to replay.
type ReplayQuarantineInput struct {
	QuarantineID int64
}

// ReplayQuarantineResult is what the replay did.
type ReplayQuarantineResult struct {
	QuarantineID int64
	Key          string
	// RecordWorkflowID/RunID is the record run that replayed the body.
	RecordWorkflowID, RecordRunID string `json:",omitempty"`
	// Outcome of the record run ("" when nothing was replayed).
	Outcome Outcome `json:",omitempty"`
	// Reason is the new quarantine reason when the replay was quarantined
	// again.
	Reason string `json:",omitempty"`
	// Status is the row's status afterwards.
	Status string
	// AlreadyDone is set when the row was already replayed or discarded:
	// nothing ran.
	AlreadyDone bool `json:",omitempty"`
}

// ResolveConflictInput settles one conflict.
type ResolveConflictInput struct {
	Key        string
	ConflictID int64
	// Keep is KeepExisting or KeepIncoming.
	Keep string
}

// ResolveConflictResult reports the resolution.
type ResolveConflictResult struct {
	Key        string
	ConflictID int64
	// Status is the conflict's status afterwards.
	Status string
	// Changed is false when the conflict was already resolved: a no-op.
	Changed bool
	// ReplacedHash is the hash of the stored version replaced by the
	// incoming one (kept in sync_conflicts), when Keep was incoming.
	ReplacedHash string `json:",omitempty"`
}
