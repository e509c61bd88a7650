// Package contract holds the names and payload types shared by the poller,
// the record workflow, its activities and the operator tooling. Keeping them
// in one leaf package lets activities start workflows by name without an
// import cycle, and makes any change to what is persisted in workflow
// history visible in one place (history is replayed, so these types are a
// compatibility surface: add fields, never rename or retype them).
package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultTaskQueue is where record and poller workflows and all their
	// activities run.
	DefaultTaskQueue = "syncbridge"

	// RecordWorkflowName and PollerWorkflowName are the registered workflow
	// type names. They are fixed strings rather than function names so a
	// refactor cannot silently orphan running executions.
	RecordWorkflowName = "RecordWorkflow"
	PollerWorkflowName = "PollerWorkflow"

	// RecordWorkflowV2Name is the lean record workflow: the first delivery
	// arrives as workflow input, insert and ack run as local activities, and
	// only outcomes that need a person are indexed. It is a new type rather
	// than a workflow.GetVersion branch because GetVersion writes a marker
	// and a TemporalChangeVersion upsert into every history (two of the
	// eight events a record may cost). On a versioned fleet
	// (SYNCBRIDGE_VERSIONING) that is the whole reason: records are pinned
	// to the build that started them, so a later shape change can keep the
	// name and ship as a new build, no new type and no GetVersion needed.
	// On an unversioned fleet a new type is still what makes a rolling
	// deploy safe: a worker that does not know the type refuses its tasks
	// instead of running the old shape on them.
	//
	// RecordWorkflowName is not retired. It is still started: as the child
	// of a quarantine replay (workflows.ReplayQuarantineWorkflow) and by
	// the benchmark's legacy shape. And a fleet upgraded from an
	// unversioned build may hold running executions of it (a record stuck
	// on the database lives up to SYNCBRIDGE_UNCLASSIFIED_RETRY_FOR, and
	// reconciliation re-drives old runs), which versioning cannot route to
	// old workers that no longer exist. Retire it once the replay starts
	// V2 and `WorkflowType = 'RecordWorkflow' AND ExecutionStatus =
	// 'Running'` counts zero in every namespace; its recorded histories
	// stay in the replay tests for as long as it is registered.
	RecordWorkflowV2Name = "RecordWorkflowV2"

	// FloodNoticeWorkflowName shows conflicts and quarantines flood mode
	// stored and acked in bulk: one run per group of them and outcome,
	// listing its records (activities.Notices). Its ID is
	// FloodNoticeWorkflowID.
	FloodNoticeWorkflowName = "FloodNotice"

	// SignalDelivery carries a (re)delivery of a message to the record
	// workflow that owns its key.
	SignalDelivery = "delivery"
	// SignalStopPoller asks a poller workflow to finish its current batch
	// and complete instead of continuing as new.
	SignalStopPoller = "stop"

	// ErrTypeBadInput marks errors that can never succeed on retry. Such a
	// message is quarantined, never retried.
	ErrTypeBadInput = "BadInput"
)

// RecordTypesQuery is the visibility filter matching record workflows of
// every shape, for counts and listings that must see old and new runs.
const RecordTypesQuery = "WorkflowType IN ('" + RecordWorkflowName + "', '" + RecordWorkflowV2Name + "')"

// Outcome is the terminal state of one message.
type Outcome string

const (
	OutcomeInserted    Outcome = "inserted"
	OutcomeDuplicate   Outcome = "duplicate"
	OutcomeConflict    Outcome = "conflict"
	OutcomeQuarantined Outcome = "quarantined"
)

// Severity orders outcomes so a workflow that handled several messages for
// one key reports the one an operator most needs to see.
func (o Outcome) Severity() int {
	switch o {
	case OutcomeQuarantined:
		return 4
	case OutcomeConflict:
		return 3
	case OutcomeInserted:
		return 2
	case OutcomeDuplicate:
		return 1
	}
	return 0
}

// NeedsPerson reports whether an outcome waits on an operator. Only those
// are written to the SyncOutcome search attribute by the lean record
// workflow: an upsert is a billable action and a history event, and
// clean outcomes are found in the database, not the Web UI.
func (o Outcome) NeedsPerson() bool {
	return o == OutcomeConflict || o == OutcomeQuarantined
}

// Delivery is one delivery of a message as the poller received it. Body is
// the raw message body; it holds patient data, which is why worker payloads
// can be encrypted (see internal/codec).
type Delivery struct {
	MessageID     string
	ReceiptHandle string
	Tag           string
	Body          []byte
	ConsumedTimes int64
	// NextConsumeTime (ms epoch) is when the handle stops being valid.
	NextConsumeTime int64
}

// RecordInput starts a record workflow. Deliveries normally arrive by
// signal-with-start; Initial lets reconciliation re-drive a record from its
// recorded input without a live receipt handle.
type RecordInput struct {
	Key     string
	Topic   string
	Group   string
	Initial []Delivery
	// Carried is the state a lean record run hands to the run it continues
	// as new: messages already committed (bodies dropped), with the handle
	// last acknowledged for each. Empty on a first run.
	Carried *CarriedState `json:",omitempty"`
}

// CarriedState is what a record workflow keeps across continue-as-new.
type CarriedState struct {
	Done       []DoneMessage
	Acked      int
	AckExpired int
}

// DoneMessage is a committed message of a key: its newest delivery without
// the body, what the database decided, and the handle acknowledged last.
type DoneMessage struct {
	Delivery Delivery
	Outcome  Outcome
	Reason   string `json:",omitempty"`
	AckedFor string `json:",omitempty"`
}

// MessageResult is what happened to one distinct message of a key.
type MessageResult struct {
	MessageID string
	Outcome   Outcome
	// Reason is the quarantine reason code, if quarantined.
	Reason string `json:",omitempty"`
}

// RecordResult is the record workflow's result, shown in the Web UI.
type RecordResult struct {
	Key      string
	Outcome  Outcome
	Messages []MessageResult
	// Acked counts receipt handles acknowledged; AckExpired those the
	// broker no longer knew (already redelivered or expired).
	Acked      int
	AckExpired int
}

// PollerInput configures one poller workflow.
type PollerInput struct {
	Topic string
	Group string
	Index int
	// RunsBeforeContinue bounds history: after this many poll activity
	// runs the workflow continues as new. Zero means 50.
	RunsBeforeContinue int
	// PollRunFor is how long one poll activity runs before returning
	// control to the workflow. Zero means 5 minutes.
	PollRunFor time.Duration
	// MainQueueFirst makes the run's first poll go to the main task queue
	// instead of the poll queue: set by a run whose poll found no free
	// poll slot (workflows.PollerWorkflow). Builds from before the poll
	// queue ignore it.
	MainQueueFirst bool `json:",omitempty"`
}

// PollerWorkflowID is stable per (topic, group, index) so that every worker
// in a fleet converges on the same set of pollers instead of each adding
// its own.
func PollerWorkflowID(topic, group string, index int) string {
	return "poller-" + topic + "-" + group + "-" + strconv.Itoa(index)
}

// PollTaskQueue is the task queue the poller workflows schedule their poll
// activities on (new executions; see workflows.PollerWorkflow): every
// worker hosts the Poll activity there with a single slot, so a fleet with
// at least as many workers as pollers runs one poll per worker.
func PollTaskQueue(taskQueue string) string { return taskQueue + "-poll" }

// RecordWorkflowID maps a message key to its workflow ID. The key is a
// device-local record ID, never patient data.
func RecordWorkflowID(prefix, key string) string {
	return prefix + key
}

// KeyFromWorkflowID reverses RecordWorkflowID.
func KeyFromWorkflowID(prefix, id string) string {
	return strings.TrimPrefix(id, prefix)
}

// NoticeRecord is one record a flood notice shows: which message, and the
// quarantine reason if it was quarantined. Never patient data.
type NoticeRecord struct {
	Key       string
	MessageID string
	Reason    string `json:",omitempty"`
}

// FloodNoticeInput is a flood notice: records that need a person, all with
// the same outcome (conflict or quarantined), stored in bulk and acked.
type FloodNoticeInput struct {
	Outcome      Outcome
	Topic, Group string
	Records      []NoticeRecord
}

// FloodNoticeResult is what the notice shows in the Web UI.
type FloodNoticeResult struct {
	Outcome Outcome
	Records []NoticeRecord
}

// FloodNoticeWorkflowID names a notice by its records: starting the same
// notice twice (a start retried after a lost reply, a sweep racing a slow
// start) finds the first instead of adding another. The reserved
// "syncbridge-" prefix keeps it apart from every record ID.
func FloodNoticeWorkflowID(prefix string, in FloodNoticeInput) string {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write([]byte{0})
	h.Write([]byte(in.Outcome))
	for _, r := range in.Records {
		h.Write([]byte{0})
		h.Write([]byte(r.Key))
		h.Write([]byte{0})
		h.Write([]byte(r.MessageID))
	}
	return "syncbridge-notice-" + hex.EncodeToString(h.Sum(nil)[:16])
}
