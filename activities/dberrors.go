package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/store"
)

// Why this file exists: an insert error that was neither transient nor
// known bad data used to be retried forever. Each such record stays
// running and holds an in-flight slot, so a couple of hundred of them stop
// polling for the whole fleet. Every failed insert now goes through
// classifyInsertError, which decides per store.Classify:
//
//   - bad data (a value too long, a packet too large, a trigger's SIGNAL):
//     quarantine at once, reason db_rejected_<mysql error number>;
//   - environment (rights, missing database or table, read-only): retry,
//     and raise the DBAlarm that /readyz reports, since every record fails
//     alike until a person fixes the database;
//   - transient: retry;
//   - unclassified: retry until UnclassifiedRetryFor has passed since the
//     first failure, then quarantine as db_unclassified.

// Quarantine reasons for database refusals.
const (
	// ReasonDBRejectedPrefix + the MySQL error number, e.g. db_rejected_1406.
	ReasonDBRejectedPrefix = "db_rejected"
	// ReasonDBUnclassified: an error nobody classified outlasted
	// UnclassifiedRetryFor.
	ReasonDBUnclassified = "db_unclassified"
)

// DefaultUnclassifiedRetryFor is used when DBErrorPolicy leaves it zero
// (and is SYNCBRIDGE_UNCLASSIFIED_RETRY_FOR's default).
const DefaultUnclassifiedRetryFor = 6 * time.Hour

// DBErrorPolicy configures what a failed insert becomes.
type DBErrorPolicy struct {
	// UnclassifiedRetryFor bounds the retries of an unclassified error,
	// counted from the first failed attempt. Zero means
	// DefaultUnclassifiedRetryFor.
	UnclassifiedRetryFor time.Duration
	// Alarm, if not nil, is raised on environment errors.
	Alarm *DBAlarm
}

func (p *DBErrorPolicy) retryFor() time.Duration {
	if p == nil || p.UnclassifiedRetryFor <= 0 {
		return DefaultUnclassifiedRetryFor
	}
	return p.UnclassifiedRetryFor
}

// classifyInsertError turns a failed insert into the error the activity
// returns: a non-retryable bad-input error (the workflow quarantines the
// message with the reason) or a retryable error whose text carries only
// the error number, never the values MySQL may quote.
func classifyInsertError(err error, firstFailure, now time.Time, retryFor time.Duration) error {
	if err == nil {
		return nil
	}
	class := store.Classify(err)
	num := store.ErrorNumber(err)
	desc := describeDBError(err)
	switch class {
	case store.ClassBadData:
		reason := ReasonDBRejectedPrefix
		if num != 0 {
			reason = fmt.Sprintf("%s_%d", ReasonDBRejectedPrefix, num)
		}
		return badInput(reason, "database rejected the record: "+desc)
	case store.ClassUnclassified:
		if failing := now.Sub(firstFailure); failing >= retryFor {
			return badInput(ReasonDBUnclassified, fmt.Sprintf(
				"database error nobody classified, failing for %s (limit %s, SYNCBRIDGE_UNCLASSIFIED_RETRY_FOR): %s",
				failing.Round(time.Second), retryFor, desc))
		}
	}
	return fmt.Errorf("insert record (%s database error, retried): %s", class, desc)
}

// insertFailed is what the Insert activity returns for a failed
// store.Insert. It counts the failure, raises the alarm for environment
// errors and classifies with the activity's first schedule time as the
// first failure: Temporal keeps ScheduledTime across the retries of one
// activity, so the bound covers all of them.
func (a *Activities) insertFailed(ctx context.Context, err error) error {
	info := activity.GetInfo(ctx)
	return a.insertFailedAt(err, info.ScheduledTime, time.Now(), int(info.Attempt))
}

// insertFailedAt is insertFailed with the attempt's facts given, for
// callers outside the Insert activity (the poller's direct path keeps its
// own first-failure time and attempt count).
func (a *Activities) insertFailedAt(err error, firstFailure, now time.Time, attempt int) error {
	class := store.Classify(err)
	if a.Metrics != nil {
		a.Metrics.InsertError(class.String(), store.ErrorNumber(err))
		if attempt == metrics.InsertFailingAfter+1 && class != store.ClassBadData {
			a.Metrics.InsertFailingRecords.Inc(1)
		}
	}
	if class == store.ClassEnvironment && a.DBErrors != nil && a.DBErrors.Alarm != nil {
		a.DBErrors.Alarm.Raise(store.ErrorNumber(err), now)
	}
	return classifyInsertError(err, firstFailure, now, a.DBErrors.retryFor())
}

// DBAlarm remembers the last environment error of the database (rights,
// missing table, read-only) so /readyz can report it. It clears itself
// Hold after the last one: retries raise it again while the cause lasts.
type DBAlarm struct {
	// Hold is how long one error keeps the alarm raised; zero means 2m,
	// longer than the insert's retry backoff reaches in minutes.
	Hold time.Duration

	mu     sync.Mutex
	last   time.Time
	number uint16
}

// Raise records an environment error seen at now.
func (d *DBAlarm) Raise(number uint16, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.After(d.last) {
		d.last, d.number = now, number
	}
}

// Err is nil unless an environment error was seen within Hold of now.
func (d *DBAlarm) Err(now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	hold := d.Hold
	if hold <= 0 {
		hold = 2 * time.Minute
	}
	if d.last.IsZero() || now.Sub(d.last) > hold {
		return nil
	}
	return fmt.Errorf("inserts refused by the database environment (mysql error %d, %s ago): check rights, database, tables and read-only mode",
		d.number, now.Sub(d.last).Round(time.Second))
}

// Check is Err in the shape of a readiness check.
func (d *DBAlarm) Check(ctx context.Context) error { return d.Err(time.Now()) }
