package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/syncbridge/syncbridge/internal/acker"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/uber-go/tally/v4"
)

// Activity-level tests run the real activities against a real MariaDB
// database through the SDK's activity test environment.

func newActs(t *testing.T) (*Activities, *store.Store) {
	t.Helper()
	dsn := storetest.NewDatabase(t)
	db, err := store.Open(context.Background(), dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := store.New(db)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &Activities{Store: st, Metrics: metrics.NewPipeline(tally.NoopScope)}, st
}

func run[T any](t *testing.T, fn any, args ...any) (T, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(fn)
	var out T
	v, err := env.ExecuteActivity(fn, args...)
	if err == nil && v != nil && v.HasValue() {
		if gerr := v.Get(&out); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return out, err
}

const good = `{"patientData":{"patientId":"P-1","notes":"fine"},"deviceTimestamp":1732600000000}`

func TestInsertOutcomes(t *testing.T) {
	a, _ := newActs(t)
	d := contract.Delivery{MessageID: "m1", Body: []byte(good)}
	republished := contract.Delivery{MessageID: "m3", Body: []byte(good)}
	// The second insert of m1 is a retry whose first attempt committed:
	// the stored row is m1's own, so it reports inserted, truthfully. A
	// republish of the same payload under another message ID is the
	// duplicate.
	for i, c := range []struct {
		d    contract.Delivery
		want contract.Outcome
	}{{d, contract.OutcomeInserted}, {d, contract.OutcomeInserted}, {republished, contract.OutcomeDuplicate}} {
		res, err := run[InsertResult](t, a.Insert, InsertInput{Key: "k1", Delivery: c.d})
		if err != nil || res.Outcome != c.want {
			t.Fatalf("insert %d: %+v %v, want %s", i, res, err, c.want)
		}
	}
	changed := contract.Delivery{MessageID: "m2", Body: []byte(`{"patientData":{"patientId":"P-1","notes":"changed"},"deviceTimestamp":1732600000000}`)}
	res, err := run[InsertResult](t, a.Insert, InsertInput{Key: "k1", Delivery: changed})
	if err != nil || res.Outcome != contract.OutcomeConflict {
		t.Fatalf("changed payload: %+v %v", res, err)
	}
}

// Invalid UTF-8 cannot arrive through the SDKs, but a raw HTTP producer
// could send it; it must be bad input, not a retry loop.
func TestInsertActivityRejectsInvalidUTF8(t *testing.T) {
	a, st := newActs(t)
	body := []byte("{\"patientData\":{\"patientId\":\"P-\xff\"},\"deviceTimestamp\":1732600000000}")
	_, err := run[InsertResult](t, a.Insert, InsertInput{Key: "k1", Delivery: contract.Delivery{MessageID: "m1", Body: body}})
	reason, _, ok := BadInputReason(err)
	if !ok || reason != "invalid_utf8" {
		t.Fatalf("want BadInput invalid_utf8, got %v", err)
	}
	if n, _ := st.CountRecords(context.Background()); n != 0 {
		t.Fatalf("%d rows after bad input", n)
	}
}

func TestBadInputErrorsAreNonRetryableAndCarryNoPatientData(t *testing.T) {
	a, _ := newActs(t)
	body := []byte(`{"patientData":{"patientId":"SECRET-ID-4711","notes":"x"},"deviceTimestamp":"not a time"}`)
	_, err := run[InsertResult](t, a.Insert, InsertInput{Key: "k1", Delivery: contract.Delivery{MessageID: "m1", Body: body}})
	reason, msg, ok := BadInputReason(err)
	if !ok || reason != "bad_timestamp" {
		t.Fatalf("want BadInput bad_timestamp, got %v", err)
	}
	if contains(msg, "SECRET-ID-4711") || contains(err.Error(), "SECRET-ID-4711") {
		t.Fatalf("patient ID leaked into error: %v", err)
	}
}

func TestQuarantineIsIdempotent(t *testing.T) {
	a, st := newActs(t)
	in := QuarantineInput{Key: "k", Delivery: contract.Delivery{MessageID: "m1", Body: []byte("{"), ConsumedTimes: 1}, Reason: "bad_json", Detail: "x"}
	for i := 0; i < 2; i++ {
		if _, err := run[struct{}](t, a.Quarantine, in); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := st.QuarantineRows(context.Background())
	if err != nil || len(rows) != 1 {
		t.Fatalf("quarantine rows: %d, %v", len(rows), err)
	}
}

// Transient DB errors are returned as retryable errors, without the
// driver's text (which can quote values).
func TestTransientDBErrorIsRetryable(t *testing.T) {
	a, _ := newActs(t)
	a.Store.DB.Close()
	_, err := run[InsertResult](t, a.Insert, InsertInput{Key: "k1", Delivery: contract.Delivery{MessageID: "m1", Body: []byte(good)}})
	if err == nil {
		t.Fatal("insert on a closed pool succeeded")
	}
	if _, _, bad := BadInputReason(err); bad {
		t.Fatalf("a database failure was classed as bad input: %v", err)
	}
}

type fakeConsumer struct{ refused map[string]bool }

func (f *fakeConsumer) Consume(context.Context, int, time.Duration) ([]mqclient.Message, error) {
	return nil, nil
}

func (f *fakeConsumer) Ack(_ context.Context, hs []string) ([]mqclient.HandleError, error) {
	var out []mqclient.HandleError
	for _, h := range hs {
		if f.refused[h] {
			out = append(out, mqclient.HandleError{Handle: h, Code: "ReceiptHandleError"})
		}
	}
	if len(hs) == 1 && hs[0] == "boom" {
		return nil, errors.New("503")
	}
	return out, nil
}

func TestAckRefusedHandleIsNotAFailure(t *testing.T) {
	a := &Activities{Metrics: metrics.NewPipeline(tally.NoopScope)}
	ack := acker.New(&fakeConsumer{refused: map[string]bool{"old": true}}, acker.Options{FlushInterval: time.Millisecond})
	defer ack.Close()
	a.Acker = ack
	res, err := run[AckResult](t, a.Ack, AckInput{Handles: []string{"new", "old"}})
	if err != nil || res.Acked != 1 || res.Refused != 1 {
		t.Fatalf("got %+v, %v", res, err)
	}
	if _, err := run[AckResult](t, a.Ack, AckInput{Handles: []string{"boom"}}); err == nil {
		t.Fatal("a failed ack call must fail the activity so it is retried")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
