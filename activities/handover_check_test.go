package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/acker"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func TestEncodedDeliverySizeIsExact(t *testing.T) {
	dc := converter.GetDefaultDataConverter()
	for _, d := range []contract.Delivery{
		{},
		{MessageID: "M1", ReceiptHandle: "h", Tag: "SyncEvent", Body: []byte{}, ConsumedTimes: 3, NextConsumeTime: 1740989730123},
		{MessageID: "<&>\u2028", ReceiptHandle: "h\"\\\x01", Body: []byte("x")},
		{MessageID: "M2", Body: []byte("ab")},
		{MessageID: "M3", Body: []byte("abc\xff\x00")},
		{MessageID: "M4", Body: []byte(strings.Repeat("{\"a\":1}", 100_001))},
	} {
		p, err := dc.ToPayload(d)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := EncodedDeliverySize(d), len(p.GetData()); got != want {
			t.Errorf("EncodedDeliverySize(body %d bytes) = %d, the SDK encodes %d", len(d.Body), got, want)
		}
	}
}

// CheckHandover skips the exact size below deliverySizeBound, so the bound
// must never be under it: strings that escape at their longest, integers
// at their longest.
func TestDeliverySizeBoundHoldsTheExactSize(t *testing.T) {
	for _, d := range []contract.Delivery{
		{},
		{MessageID: "M1", ReceiptHandle: "h", Tag: "SyncEvent", Body: []byte{}, ConsumedTimes: 3, NextConsumeTime: 1740989730123},
		{MessageID: strings.Repeat("\x01", 40), ReceiptHandle: strings.Repeat("\xff", 40), Tag: strings.Repeat("<", 40), Body: []byte("x")},
		{MessageID: "M3", ConsumedTimes: -1 << 63, NextConsumeTime: -1 << 63, Body: []byte("abc\xff\x00")},
		{MessageID: "M4", Body: []byte(strings.Repeat("{\"a\":1}", 100_001))},
	} {
		if bound, exact := deliverySizeBound(d), EncodedDeliverySize(d); bound < exact {
			t.Errorf("bound %d under the exact size %d for %+v", bound, exact, d.MessageID)
		}
	}
}

func TestCheckHandover(t *testing.T) {
	d := func(body int) contract.Delivery {
		return contract.Delivery{MessageID: "M1", ReceiptHandle: "h", Tag: "SyncEvent", Body: make([]byte, body)}
	}
	compose := Settings{WorkflowIDPrefix: "rec/", MaxWorkflowIDBytes: 255}
	tests := []struct {
		name     string
		s        Settings
		key      string
		d        contract.Delivery
		reason   string
		inDetail string
	}{
		{"ordinary", Settings{}, "rec-1", d(100), "", ""},
		{"key at the default ID limit", Settings{}, strings.Repeat("k", 1000), d(100), "", ""},
		{"key over the default ID limit", Settings{}, strings.Repeat("k", 1001), d(100), ReasonKeyTooLong, "1001 bytes"},
		// Bytes, prefix included: 63 four-byte characters are 252 bytes,
		// 256 with the prefix.
		{"prefix and multibyte key over 255", compose, strings.Repeat("🩺", 63), d(100), ReasonKeyTooLong, "256 bytes"},
		{"prefix and key at 255", compose, strings.Repeat("k", 251), d(100), "", ""},
		{"key equal to a poller ID", Settings{}, contract.PollerWorkflowID("patient-sync", "GID_syncbridge", 0), d(100), ReasonKeyReserved, ""},
		{"key equal to the reconcile ID", Settings{}, contract.ReconcileWorkflowID, d(100), ReasonKeyReserved, ""},
		{"key like a replay run", compose, "rec-1#replay-4", d(100), ReasonKeyReserved, ""},
		{"poller-like key under a prefix", compose, contract.PollerWorkflowID("t", "g", 0), d(100), "", ""},
		{"key not UTF-8", Settings{}, "rec-\xff", d(100), syncevent.ReasonInvalidUTF8, ""},
		{"body at the parse limit", Settings{}, "rec-1", d(syncevent.DefaultMaxBodyBytes), "", ""},
		{"body over the parse limit", Settings{}, "rec-1", d(syncevent.DefaultMaxBodyBytes + 1), ReasonBodyTooLarge, "max 1048576"},
		// The 1.8 MB body: under a raised parse limit it still
		// cannot fit Temporal's 2 MiB once base64-encoded.
		{"1.8 MB body over the blob limit", Settings{MaxBodyBytes: 4 << 20}, "rec-1", d(1_800_000), ReasonBodyTooLarge, "Temporal accepts 2097152"},
		{"body just under the blob limit", Settings{MaxBodyBytes: 4 << 20}, "rec-1", d((DefaultMaxPayloadBytes-PayloadOverhead)*3/4 - 200), "", ""},
		{"lower blob limit", Settings{MaxPayloadBytes: 64 << 10}, "rec-1", d(40 << 10), ReasonBodyTooLarge, "Temporal accepts 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reason, detail, ok := tc.s.CheckHandover(tc.key, tc.d)
			if ok != (tc.reason == "") || reason != tc.reason {
				t.Fatalf("CheckHandover = %q, %q, %t; want reason %q", reason, detail, ok, tc.reason)
			}
			if !ok && (detail == "" || strings.Contains(detail, tc.key)) {
				t.Errorf("detail %q empty or quotes the key", detail)
			}
			if !strings.Contains(detail, tc.inDetail) {
				t.Errorf("detail %q lacks %q", detail, tc.inDetail)
			}
		})
	}
}

func TestIsPermanentHandoverError(t *testing.T) {
	tests := []struct {
		err    error
		reason string
	}{
		// The server's own messages (service/frontend/errors.go,
		// service/history/consts, common/util.go).
		{serviceerror.NewInvalidArgument("WorkflowId length exceeds limit."), ReasonKeyTooLong},
		{serviceerror.NewInvalidArgument("WorkflowId exceeds maximum allowed length (1104/1000)"), ReasonKeyTooLong}, // chasm/lib/workflow, SignalWithStart's path
		{serviceerror.NewInvalidArgument("Blob data size exceeds limit."), ReasonBodyTooLarge},
		{serviceerror.NewInvalidArgument("exceeded workflow execution limit for signal events"), ReasonSignalLimit},
		{fmt.Errorf("signal-with-start: %w", serviceerror.NewInvalidArgument("something new")), ReasonHandoverRejected},
		{serviceerror.NewResourceExhausted(0, "busy"), ""},
		{serviceerror.NewUnavailable("down"), ""},
		{serviceerror.NewWorkflowExecutionAlreadyStarted("x", "", ""), ""},
		{errors.New("dial tcp: refused"), ""},
	}
	for _, tc := range tests {
		reason, ok := IsPermanentHandoverError(tc.err)
		if ok != (tc.reason != "") || reason != tc.reason {
			t.Errorf("IsPermanentHandoverError(%v) = %q, %t; want %q", tc.err, reason, ok, tc.reason)
		}
	}
}

type recordingAcker struct{ handles []string }

func (r *recordingAcker) Ack(_ context.Context, handles []string) (acker.Result, error) {
	r.handles = append(r.handles, handles...)
	return acker.Result{Acked: len(handles)}, nil
}

// At the signal limit the key's running workflow takes no more deliveries,
// but the message is good: it is committed by the poller and acked, not
// quarantined and not left for redelivery.
func TestSignalLimitCommitsTheMessage(t *testing.T) {
	a, st := newActs(t)
	ack := &recordingAcker{}
	a.Acker = ack
	d := contract.Delivery{MessageID: "m-1", ReceiptHandle: "h-1", Body: []byte(good)}
	err := a.refusedHandover(context.Background(), "busy-key", d, ReasonSignalLimit,
		serviceerror.NewInvalidArgument("exceeded workflow execution limit for signal events"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.DB.QueryRow("SELECT COUNT(*) FROM patient_records WHERE local_record_id = 'busy-key'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows for the key, want 1 (%v)", n, err)
	}
	if err := st.DB.QueryRow("SELECT COUNT(*) FROM sync_quarantine").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d quarantine rows, want 0 (%v)", n, err)
	}
	if len(ack.handles) != 1 || ack.handles[0] != "h-1" {
		t.Fatalf("acked %v, want [h-1]", ack.handles)
	}
}
