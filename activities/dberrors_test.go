package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func isRetryable(err error) bool {
	var appErr *temporal.ApplicationError
	return err != nil && !(errors.As(err, &appErr) && appErr.NonRetryable())
}

// A trigger's SIGNAL on the real server quarantines the record with the
// error number in the reason, instead of retrying forever.
func TestClassifyInsertErrorTriggerSignal(t *testing.T) {
	a, st := newActs(t)
	ctx := context.Background()
	if _, err := st.DB.ExecContext(ctx, `CREATE TRIGGER refuse_blocked BEFORE INSERT ON patient_records
		FOR EACH ROW BEGIN
			IF NEW.patient_id = 'BLOCKED' THEN
				SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'blocked SECRET';
			END IF;
		END`); err != nil {
		t.Fatal(err)
	}
	ev, err := syncevent.Parse("k-sig", "m-sig", []byte(`{"patientData":{"patientId":"BLOCKED","notes":"x"},"deviceTimestamp":1732600000000}`))
	if err != nil {
		t.Fatal(err)
	}
	_, insErr := st.Insert(ctx, ev)
	if insErr == nil {
		t.Fatal("trigger did not refuse the insert")
	}
	now := time.Now()
	got := a.insertFailedAt(insErr, now, now, 1)
	reason, msg, ok := BadInputReason(got)
	if !ok || reason != "db_rejected_1644" || isRetryable(got) {
		t.Fatalf("got %v (reason %q, bad input %v), want non-retryable db_rejected_1644", got, reason, ok)
	}
	if strings.Contains(msg, "SECRET") {
		t.Errorf("message quotes the server's text: %q", msg)
	}
}

func TestClassifyInsertErrorClasses(t *testing.T) {
	t.Parallel()
	my := func(n uint16) error { return &mysql.MySQLError{Number: n, Message: "value 'SECRET'"} }
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const retryFor = 6 * time.Hour
	tests := []struct {
		name       string
		err        error
		first      time.Time
		wantReason string // "" = retryable
	}{
		{"too long", my(1406), now, "db_rejected_1406"},
		{"bad string", my(1366), now, "db_rejected_1366"},
		{"row size", my(1118), now, "db_rejected_1118"},
		{"packet too large (server)", my(1153), now, "db_rejected_1153"},
		{"packet too large (driver)", fmt.Errorf("exec: %w", mysql.ErrPktTooLarge), now, "db_rejected_1153"},
		{"trigger", my(1644), now, "db_rejected_1644"},
		{"deadlock, even after a day", my(1213), now.Add(-24 * time.Hour), ""},
		{"no rights, even after a day", my(1142), now.Add(-24 * time.Hour), ""},
		{"unknown database", my(1049), now.Add(-24 * time.Hour), ""},
		{"unclassified, young", my(1064), now.Add(-retryFor + time.Minute), ""},
		{"unclassified, old", my(1064), now.Add(-retryFor), "db_unclassified"},
		{"unclassified plain error, old", errors.New("weird"), now.Add(-7 * time.Hour), "db_unclassified"},
	}
	for _, tc := range tests {
		got := classifyInsertError(tc.err, tc.first, now, retryFor)
		reason, msg, ok := BadInputReason(got)
		switch {
		case tc.wantReason == "" && (ok || !isRetryable(got)):
			t.Errorf("%s: got non-retryable %v (%s), want retryable", tc.name, got, reason)
		case tc.wantReason != "" && (!ok || reason != tc.wantReason || isRetryable(got)):
			t.Errorf("%s: got %v (reason %q), want non-retryable %s", tc.name, got, reason, tc.wantReason)
		}
		if strings.Contains(got.Error(), "SECRET") || strings.Contains(msg, "SECRET") {
			t.Errorf("%s: error quotes the server's text: %v", tc.name, got)
		}
	}
}

// Environment errors raise the alarm that /readyz reports; it clears once
// they stop.
func TestEnvironmentErrorRaisesAlarm(t *testing.T) {
	t.Parallel()
	alarm := &DBAlarm{Hold: time.Minute}
	a := &Activities{Metrics: metrics.NewPipeline(tally.NoopScope), DBErrors: &DBErrorPolicy{Alarm: alarm}}
	now := time.Now()
	if err := alarm.Err(now); err != nil {
		t.Fatalf("fresh alarm raised: %v", err)
	}
	_ = a.insertFailedAt(&mysql.MySQLError{Number: 1213}, now, now, 1)
	if err := alarm.Err(now); err != nil {
		t.Fatalf("a deadlock raised the alarm: %v", err)
	}
	_ = a.insertFailedAt(&mysql.MySQLError{Number: 1142}, now, now, 1)
	err := alarm.Err(now.Add(30 * time.Second))
	if err == nil || !strings.Contains(err.Error(), "1142") {
		t.Fatalf("alarm after 1142: %v", err)
	}
	if err := alarm.Err(now.Add(2 * time.Minute)); err != nil {
		t.Errorf("alarm still raised after Hold: %v", err)
	}
}

// A record counts once in insert_failing_records when its insert fails
// for the (InsertFailingAfter+1)th time.
func TestInsertFailingRecordsMetric(t *testing.T) {
	t.Parallel()
	scope := tally.NewTestScope("", nil)
	a := &Activities{Metrics: metrics.NewPipeline(scope)}
	now := time.Now()
	for attempt := 1; attempt <= metrics.InsertFailingAfter+5; attempt++ {
		_ = a.insertFailedAt(&mysql.MySQLError{Number: 1142}, now, now, attempt)
	}
	var failing, errs int64
	for _, c := range scope.Snapshot().Counters() {
		switch c.Name() {
		case "insert_failing_records":
			failing += c.Value()
		case "insert_errors":
			if c.Tags()["class"] == "environment" && c.Tags()["code"] == "1142" {
				errs += c.Value()
			}
		}
	}
	if failing != 1 {
		t.Errorf("insert_failing_records = %d, want 1", failing)
	}
	if errs != metrics.InsertFailingAfter+5 {
		t.Errorf("insert_errors{class=environment,code=1142} = %d, want %d", errs, metrics.InsertFailingAfter+5)
	}
}

// insertFailed reads the first failure and attempt from the activity's
// info, so it works inside a real activity execution.
func TestInsertFailedInActivity(t *testing.T) {
	t.Parallel()
	a := &Activities{Metrics: metrics.NewPipeline(tally.NoopScope)}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	fail := func(ctx context.Context) error { return a.insertFailed(ctx, &mysql.MySQLError{Number: 1406}) }
	env.RegisterActivity(fail)
	_, err := env.ExecuteActivity(fail)
	if reason, _, ok := BadInputReason(err); !ok || reason != "db_rejected_1406" {
		t.Fatalf("got %v, want db_rejected_1406", err)
	}
}
