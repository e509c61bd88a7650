package workerapp

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// patientNeedles are strings that only patient data would put in history.
var patientNeedles = []string{"patientData", "patientId", "notes", "vitals", "deviceTimestamp"}

// rawScan reads a workflow's history as the server stores it (a client
// without the codec) and reports every payload or failure text that is
// readable and carries patient data, plus counts of what it saw.
type rawScan struct {
	payloads, encrypted, failures int
	// plain counts unencrypted payloads outside search attributes (which
	// the codec never sees: visibility indexes them).
	plain  int
	leaks  []string
	keyIDs map[string]bool
}

func (p *pipe) scanRaw(workflowID string, extra []string) *rawScan {
	p.t.Helper()
	s := &rawScan{keyIDs: map[string]bool{}}
	it := p.env.RawClient.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			p.t.Fatal(err)
		}
		searchAttr := map[*commonpb.Payload]bool{}
		walk(ev.ProtoReflect(), func(m proto.Message) {
			switch x := m.(type) {
			case *commonpb.SearchAttributes:
				for _, p := range x.GetIndexedFields() {
					searchAttr[p] = true
				}
			case *commonpb.Payload:
				s.payloads++
				if !searchAttr[x] && !codec.IsEncrypted(x) {
					s.plain++
				}
				if codec.IsEncrypted(x) {
					s.encrypted++
					s.keyIDs[string(x.GetMetadata()["encryption-key-id"])] = true
					return
				}
				s.check(ev.GetEventType().String()+" payload", x.GetData(), extra)
			case *failurepb.Failure:
				s.failures++
				// The server's own note that a task was rejected because a
				// delivery arrived while it ran (the completion race of the
				// record workflows) is written by the server, not a worker,
				// and carries no payload: it cannot be encrypted and holds
				// nothing to hide. The needle check below still applies.
				serverNote := ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED &&
					ev.GetWorkflowTaskFailedEventAttributes().GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
				if x.GetEncodedAttributes() == nil && !serverNote {
					s.leaks = append(s.leaks, ev.GetEventType().String()+" failure text not encoded: "+x.GetMessage())
				}
				s.check(ev.GetEventType().String()+" failure", []byte(x.GetMessage()+x.GetStackTrace()), extra)
			}
		})
	}
	return s
}

func (s *rawScan) check(where string, b []byte, extra []string) {
	texts := [][]byte{b}
	// A []byte body written by encoding/json is base64: look inside too.
	if dec, err := base64.StdEncoding.DecodeString(strings.Trim(string(b), `"`)); err == nil {
		texts = append(texts, dec)
	}
	for _, t := range texts {
		for _, n := range append(extra, patientNeedles...) {
			if n != "" && bytes.Contains(t, []byte(n)) {
				s.leaks = append(s.leaks, where+" holds "+n)
			}
		}
	}
}

// walk calls fn for every message nested in m (m included).
func walk(m protoreflect.Message, fn func(proto.Message)) {
	fn(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				walk(v.List().Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), fn)
		}
		return true
	})
}

// With default settings (a key configured, nothing else), the server's
// copy of every record history holds no patient field: not in the start
// input, the delivery signals, activity inputs and results, the workflow
// result, nor in failure texts (poison messages fail activities with
// messages naming what was wrong).
func TestRawHistoryHoldsNoPatientData(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute, Faults: mqemu.Faults{DuplicateRate: 0.3}, Seed: 11}, nil)
	msgs := generate(syncevent.GenOptions{Count: 40, DistinctKeys: 30, ChangedRate: 0.5, BadRate: 0.25, Seed: 9, KeyPrefix: "raw-"})
	ids := p.publish(msgs)
	p.worker(Options{})
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))

	total := &rawScan{keyIDs: map[string]bool{}}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Key == "" || seen[m.Key] {
			continue
		}
		seen[m.Key] = true
		s := p.scanRaw(contract.RecordWorkflowID(p.prefix, m.Key), nil)
		total.payloads += s.payloads
		total.encrypted += s.encrypted
		total.failures += s.failures
		total.plain += s.plain
		total.leaks = append(total.leaks, s.leaks...)
	}
	if len(total.leaks) > 0 {
		t.Fatalf("patient data readable in raw history: %v", total.leaks)
	}
	if total.encrypted == 0 || total.plain != 0 {
		t.Fatalf("%d of %d payloads encrypted, %d plaintext outside search attributes", total.encrypted, total.payloads, total.plain)
	}
	t.Logf("%d record histories: %d payloads (%d encrypted), %d failures, no patient data", len(seen), total.payloads, total.encrypted, total.failures)

	// The scan itself finds plaintext: the same histories read through the
	// codec client do show the bodies.
	var in contract.RecordResult
	for _, m := range msgs {
		if !strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) {
			if err := p.env.Client.GetWorkflow(context.Background(), contract.RecordWorkflowID(p.prefix, m.Key), "").Get(context.Background(), &in); err != nil {
				t.Fatalf("codec client cannot read the result: %v", err)
			}
			break
		}
	}
}

// A failure text carrying patient data is stored encoded: the failure
// converter with EncodeCommonAttributes is in the worker's client.
func TestFailureTextsEncodedInHistory(t *testing.T) {
	p := newPipe(t, mqemu.Config{}, nil)
	cfg := p.config()
	c, err := PayloadCodec(cfg)
	if err != nil || c == nil {
		t.Fatalf("default harness config has no codec: %v", err)
	}
	o, err := clientOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.FailureConverter == nil || o.DataConverter == nil {
		t.Fatal("client options lack the encrypting converters")
	}
	f := o.FailureConverter.ErrorToFailure(contractErr("P12345678 allergic"))
	if strings.Contains(f.GetMessage(), "P12345678") || f.GetEncodedAttributes() == nil {
		t.Fatalf("failure message in plaintext: %q", f.GetMessage())
	}
}

type contractErr string

func (e contractErr) Error() string { return string(e) }

// The key is rotated in the middle of a drain: the first worker writes
// with k1 and stops with records still running; the next has k2 current
// and k1 as an old key. Every record completes, and histories begun under
// k1 finish under k2.
func TestKeyRotationMidDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, nil)
	k1, k1ID := p.vars["SYNCBRIDGE_PAYLOAD_KEY"], p.vars["SYNCBRIDGE_PAYLOAD_KEY_ID"]
	msgs := generate(syncevent.GenOptions{Count: 300, DistinctKeys: 240, ChangedRate: 0.3, Seed: 15, KeyPrefix: "rotate-"})
	ids := p.publish(msgs)
	first := p.worker(Options{})
	testwait.Until(t, 2*time.Minute, "first rows", func() bool { return countRows(t, p.env.DB) >= 30 })
	if err := first.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	running := p.count("ExecutionStatus = 'Running'")
	t.Logf("rotating with %d rows in and %d records running", countRows(t, p.env.DB), running)

	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	p.vars["SYNCBRIDGE_PAYLOAD_KEY"] = k2
	p.vars["SYNCBRIDGE_PAYLOAD_KEY_ID"] = "rotated-k2"
	p.vars["SYNCBRIDGE_PAYLOAD_OLD_KEYS"] = k1ID + ":" + k1
	p.worker(Options{})
	p.waitDrained(len(msgs), 10*time.Minute)
	p.verify(expect(t, msgs, ids))

	both, k2Only := 0, 0
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Key == "" || seen[m.Key] {
			continue
		}
		seen[m.Key] = true
		s := p.scanRaw(contract.RecordWorkflowID(p.prefix, m.Key), nil)
		switch {
		case s.keyIDs[k1ID] && s.keyIDs["rotated-k2"]:
			both++
		case s.keyIDs["rotated-k2"]:
			k2Only++
		}
	}
	t.Logf("histories spanning both keys: %d, written under k2 only: %d", both, k2Only)
	if k2Only == 0 {
		t.Fatal("no record was written with the rotated key")
	}
	if running > 0 && both == 0 {
		t.Fatal("records were running at the switch but none continued under the new key")
	}
}
