// Package activities holds the pipeline's Temporal activities: the poller
// that drains RocketMQ into record workflows, and the insert, quarantine and
// ack steps those workflows run.
//
// The ack contract: a receipt handle is acknowledged only after the
// message's row (or quarantine row) is committed. Every path that could ack
// earlier is a lost message if the worker dies in between.
package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/syncbridge/syncbridge/internal/acker"
	"github.com/syncbridge/syncbridge/internal/bytebudget"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Acker acknowledges receipt handles (internal/acker in production).
type Acker interface {
	Ack(ctx context.Context, handles []string) (acker.Result, error)
}

// Committer inserts one event, sharing transactions with concurrent
// callers (internal/groupcommit in production). Outcomes and errors are
// those of store.Insert.
type Committer interface {
	Insert(ctx context.Context, ev syncevent.Event) (store.Outcome, error)
}

// Settings are the poller's knobs; see config.Pipeline for units.
type Settings struct {
	TaskQueue        string
	WorkflowIDPrefix string
	Topic, Group     string
	BatchSize        int
	PollWait         time.Duration
	MaxInFlight      int
	// HandoverConcurrency bounds how many messages of a batch are handed
	// to their record workflows at once. Zero means 16.
	HandoverConcurrency int
	// LegacyShape hands messages over the pre-lean way: signal-with-start
	// of RecordWorkflow, one message at a time. Kept so the benchmark can
	// measure the old shape beside the new in one run; never set in
	// production.
	LegacyShape bool
	// NoEagerStart starts records through matching instead of handing
	// their first task to this worker. Set on versioned workers: the
	// server grants an eager start to the requesting worker whatever the
	// deployment's current version, so a poll activity still running on a
	// build just rolled back from (up to its 5-minute run) would keep
	// pinning new records to it (TestUpgradeAndRollbackMidDrain).
	NoEagerStart bool
	// ParkFor is how long a message for a key whose record runs waits for
	// that run to close before it is signalled to it (park.go). Zero means
	// DefaultParkFor; negative signals at once.
	ParkFor time.Duration
	// Flood is flood mode (flood.go): the poller bulk-commits clean
	// messages and hands only exceptions to record workflows.
	Flood Flood
	// Hand-over and parse limits (handover_check.go); zero means the
	// default.
	MaxWorkflowIDBytes int // Temporal's limit.maxIDLength; default 1000
	MaxPayloadBytes    int // Temporal's limit.blobSize.error; default 2 MiB
	MaxBodyBytes       int // largest body accepted; default syncevent.DefaultMaxBodyBytes
	// Plausible deviceTimestamp window; zero values mean no window beyond
	// MySQL's DATETIME range (see syncevent.Limits).
	DeviceTimeNotBefore time.Time
	DeviceTimeMaxAhead  time.Duration
}

// Activities is registered once per worker; workflows call its methods
// through a nil *Activities.
type Activities struct {
	Store *store.Store
	// Committer, when set, is used for inserts instead of Store.Insert.
	Committer Committer
	// Bulk commits flood mode's groups (the Store in production).
	Bulk BulkInserter
	// Notices starts the record runs of flood mode's conflicts and
	// quarantines (notices.go). Without it flood mode hands them to their
	// record workflows before acking them, as the default mode does.
	Notices *Notices
	// Bodies, when set, caps the bytes of message bodies the pollers of
	// this worker hold at once (poller.go, consume).
	Bodies   *bytebudget.Budget
	Acker    Acker
	Consumer mqclient.Consumer
	Temporal client.Client
	Metrics  *metrics.Pipeline
	Settings Settings

	inflight inflightCache
	flood    floodState
	running  runningRecords
	parked   parking
	// DBErrors decides what failed inserts become (dberrors.go); nil
	// means the defaults without an alarm.
	DBErrors *DBErrorPolicy
}

// InsertInput is one message to commit.
type InsertInput struct {
	Key      string
	Delivery contract.Delivery
}

// InsertResult reports what the database decided.
type InsertResult struct {
	Outcome contract.Outcome
}

// Insert commits a message's record idempotently. Bad input fails with a
// non-retryable ApplicationError of type contract.ErrTypeBadInput whose
// details hold the reason code; anything else is retried by the caller's
// policy (transient database trouble heals, and a record stuck here stays
// visible as a pending activity).
func (a *Activities) Insert(ctx context.Context, in InsertInput) (InsertResult, error) {
	start := time.Now()
	out, err := a.commit(ctx, in.Key, in.Delivery, func(err error) error { return a.insertFailed(ctx, err) })
	a.Metrics.InsertLatency.Record(time.Since(start))
	if err != nil {
		return InsertResult{}, err
	}
	a.Metrics.Outcome(string(out))
	return InsertResult{Outcome: out}, nil
}

// commit parses and inserts; shared by the Insert activity and the
// poller's handling of redeliveries for completed keys. dbFailed turns a
// database error into what the caller returns (dberrors.go): bad data
// becomes bad input, the rest stays retryable.
func (a *Activities) commit(ctx context.Context, key string, d contract.Delivery, dbFailed func(error) error) (contract.Outcome, error) {
	ev, err := a.Settings.ParseLimits().Parse(key, d.MessageID, d.Body)
	if err != nil {
		var inv *syncevent.InvalidError
		if errors.As(err, &inv) {
			return "", badInput(inv.Reason, inv.Error())
		}
		return "", fmt.Errorf("parse message %s: %w", d.MessageID, err)
	}
	var out store.Outcome
	if a.Committer != nil {
		out, err = a.Committer.Insert(ctx, ev)
	} else {
		out, err = a.Store.Insert(ctx, ev)
	}
	if err != nil {
		return "", dbFailed(err)
	}
	return contract.Outcome(out), nil
}

// badInput builds the non-retryable error for a message that can never
// succeed. The reason code travels as the error's details.
func badInput(reason, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, contract.ErrTypeBadInput, nil, reason)
}

// BadInputReason extracts the reason code from a BadInput error.
func BadInputReason(err error) (reason, msg string, ok bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeBadInput {
		return "", "", false
	}
	if appErr.HasDetails() {
		_ = appErr.Details(&reason)
	}
	return reason, appErr.Message(), true
}

func describeDBError(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("mysql error %d", me.Number)
	}
	if store.IsTransient(err) {
		return "transient database error: " + err.Error()
	}
	return err.Error()
}

// QuarantineInput keeps a poison message with its reason.
type QuarantineInput struct {
	Key      string
	Delivery contract.Delivery
	Reason   string
	Detail   string
}

// Quarantine stores a message that can never be inserted, raw body and
// reason, so it can be fixed and replayed. Idempotent per (message, reason).
func (a *Activities) Quarantine(ctx context.Context, in QuarantineInput) error {
	_, err := a.Store.Quarantine(ctx, store.QuarantineEntry{
		Key:           in.Key,
		MessageID:     in.Delivery.MessageID,
		Tag:           in.Delivery.Tag,
		Reason:        in.Reason,
		Detail:        in.Detail,
		Body:          in.Delivery.Body,
		ConsumedTimes: in.Delivery.ConsumedTimes,
	})
	if err != nil {
		return fmt.Errorf("quarantine message %s: %s", in.Delivery.MessageID, describeDBError(err))
	}
	// An expected outcome, so INFO: the reason and IDs, never the body.
	activity.GetLogger(ctx).Info("message quarantined", "reason", in.Reason, "messageId", in.Delivery.MessageID)
	a.Metrics.Quarantined(in.Reason)
	return nil
}

// AckInput lists receipt handles to acknowledge.
type AckInput struct {
	Handles []string
}

// AckResult counts what the broker accepted and refused.
type AckResult struct {
	Acked   int
	Refused int
}

// Ack acknowledges handles whose messages are committed. A refused handle
// (expired, or superseded by a redelivery) is not a failure: the record is
// committed and the next delivery is acked as a duplicate.
func (a *Activities) Ack(ctx context.Context, in AckInput) (AckResult, error) {
	start := time.Now()
	res, err := a.Acker.Ack(ctx, in.Handles)
	a.Metrics.AckLatency.Record(time.Since(start))
	if err != nil {
		// A failed broker call is counted once per call where it is made
		// (the acker's OnBatch); here only failures of this caller.
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			a.Metrics.AckFailure("timeout")
		case errors.Is(err, acker.ErrClosed):
			a.Metrics.AckFailure("shutdown")
		}
		return AckResult{}, fmt.Errorf("ack: %w", err)
	}
	a.Metrics.AckedHandles.Inc(int64(res.Acked))
	if len(res.Refused) > 0 {
		a.Metrics.ExpiredHandles.Inc(int64(len(res.Refused)))
		activity.GetLogger(ctx).Info("broker refused receipt handles; records are committed, redeliveries will be acked as duplicates",
			"refused", len(res.Refused), "code", res.Refused[0].Code)
	}
	return AckResult{Acked: res.Acked, Refused: len(res.Refused)}, nil
}
