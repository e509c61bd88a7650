package workerapp

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// badKind is one kind of bad input and what must become of it.
type badKind struct {
	name string
	key  string
	body string
	// reason: quarantined with it. "" with !refused: stored exactly as
	// sent. refused: the SDK or the broker refuses it at publish, so it
	// never reaches the pipeline (a clear refusal to the producer).
	reason  string
	refused bool
}

func recBody(pid, notes, ts string) string {
	return `{"patientData":{"patientId":` + pid + `,"notes":` + notes + `},"deviceTimestamp":` + ts + `}`
}

const okTS = `1740989730123`

// badCatalogue lists the bad-input kinds (and a few more). tag
// makes keys unique on the shared Temporal server.
func badCatalogue(tag, pollerID string) []badKind {
	good := recBody(`"P-1"`, `"n"`, okTS)
	k := func(s string) string { return s + "-" + tag }
	return []badKind{
		{name: "control: a good record", key: k("good"), body: good},
		{name: "empty body", key: k("empty"), body: "", refused: true}, // broker: 1 to 4 MiB
		{name: "not JSON", key: k("notjson"), body: "patient P-1 visited", reason: syncevent.ReasonBadJSON},
		{name: "array at top level", key: k("array"), body: "[" + good + "]", reason: syncevent.ReasonBadJSON},
		{name: "string at top level", key: k("string"), body: `"P-1"`, reason: syncevent.ReasonBadJSON},
		{name: "null at top level", key: k("null"), body: `null`, reason: syncevent.ReasonBadJSON},
		{name: "trailing data", key: k("trailing"), body: good + `{}`, reason: syncevent.ReasonBadJSON},
		{name: "byte order mark", key: k("bom"), body: "\uFEFF" + good, reason: syncevent.ReasonBadJSON},
		{name: "truncated", key: k("truncated"), body: good[:len(good)/2], reason: syncevent.ReasonBadJSON},
		{name: "deep nesting", key: k("deep"), body: `{"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `,` + good[1:], reason: syncevent.ReasonBadJSON},
		{name: "huge array", key: k("hugearray"), body: `{"x":[` + strings.Repeat("0,", 50_000) + `0],` + good[1:], reason: syncevent.ReasonBadJSON},
		{name: "duplicate JSON keys", key: k("dupkeys"), body: `{"patientData":{"patientId":"P-1","patientId":"P-2"},"deviceTimestamp":` + okTS + `}`, reason: syncevent.ReasonBadJSON},
		{name: "body over the limit", key: k("big"), body: `{"x":"` + strings.Repeat("b", syncevent.DefaultMaxBodyBytes) + `",` + good[1:], reason: syncevent.ReasonBodyTooLarge},
		{name: "1.8 MB body (over Temporal's blob limit base64-encoded)", key: k("huge"), body: `{"x":"` + strings.Repeat("b", 2_200_000) + `",` + good[1:], reason: syncevent.ReasonBodyTooLarge},
		{name: "key missing", key: "", body: good, reason: syncevent.ReasonMissingKey},
		{name: "key blank", key: "   ", body: good, reason: syncevent.ReasonMissingKey},
		{name: "key padded", key: " " + k("padded") + " ", body: good, reason: syncevent.ReasonBadKey},
		{name: "key with a tab", key: k("tab\tkey"), body: good, reason: syncevent.ReasonBadKey},
		// XML cannot carry U+0001: the SDK's encoding turns it into U+FFFD.
		{name: "key with U+0001", key: k("ctl\x01key"), body: good, reason: syncevent.ReasonInvalidUTF8},
		{name: "key of 1,100 bytes", key: k(strings.Repeat("k", 1100)), body: good, reason: "key_too_long"},
		// 100 characters (under the column) but 400+ bytes: over the
		// compose stack's 255-byte workflow ID limit.
		{name: "key over the ID limit in bytes", key: k(strings.Repeat("🩺", 100)), body: good, reason: "key_too_long"},
		{name: "key over the column", key: k(strings.Repeat("c", 200)), body: good, reason: syncevent.ReasonFieldTooLong},
		{name: "key with |", key: k("a|b"), body: good, refused: true},    // the SDK refuses it
		{name: "key with :", key: k("KEYS:b"), body: good, refused: true}, // the SDK refuses it
		{name: "key equal to the poller's workflow ID", key: pollerID, body: good, reason: "key_reserved"},
		{name: "key like a replay run", key: k("rec#replay-1"), body: good, reason: "key_reserved"},
		// The SDK's XML encoding replaces the invalid byte with U+FFFD.
		{name: "invalid UTF-8", key: k("latin1"), body: recBody(`"P-1"`, "\"Caf\xe9 visit\"", okTS), reason: syncevent.ReasonInvalidUTF8},
		{name: "raw NUL", key: k("rawnul"), body: recBody(`"P-1"`, "\"a\x00b\"", okTS), reason: syncevent.ReasonInvalidUTF8},
		{name: "U+FFFD in notes", key: k("fffd"), body: recBody(`"P-1"`, "\"Caf\uFFFD\"", okTS), reason: syncevent.ReasonInvalidUTF8},
		{name: "lone surrogate", key: k("surrogate"), body: recBody(`"P-\ud800"`, `"n"`, okTS), reason: syncevent.ReasonInvalidUTF8},
		{name: "escaped NUL in notes", key: k("escnul"), body: recBody(`"P-1"`, `"a\u0000b"`, okTS)},
		{name: "patientId missing", key: k("nopid"), body: `{"patientData":{"notes":"n"},"deviceTimestamp":` + okTS + `}`, reason: syncevent.ReasonMissingPatientID},
		{name: "patientId blank", key: k("blankpid"), body: recBody(`"  "`, `"n"`, okTS), reason: syncevent.ReasonMissingPatientID},
		{name: "patientId over-long", key: k("longpid"), body: recBody(`"`+strings.Repeat("X", 65)+`"`, `"n"`, okTS), reason: syncevent.ReasonFieldTooLong},
		{name: "patientId object", key: k("objpid"), body: recBody(`{"v":"P-1"}`, `"n"`, okTS), reason: syncevent.ReasonBadField},
		{name: "patientId wrong type", key: k("boolpid"), body: recBody(`true`, `"n"`, okTS), reason: syncevent.ReasonBadField},
		{name: "notes wrong type", key: k("arrnotes"), body: recBody(`"P-1"`, `["n"]`, okTS), reason: syncevent.ReasonBadField},
		{name: "notes over the column", key: k("longnotes"), body: recBody(`"P-1"`, `"`+strings.Repeat("n", syncevent.MaxNotesBytes+1)+`"`, okTS), reason: syncevent.ReasonFieldTooLong},
		{name: "timestamp missing", key: k("nots"), body: `{"patientData":{"patientId":"P-1"}}`, reason: syncevent.ReasonBadTimestamp},
		{name: "timestamp unparseable", key: k("badts"), body: recBody(`"P-1"`, `"n"`, `"31/02/2025 10:00"`), reason: syncevent.ReasonBadTimestamp},
		{name: "timestamp out of range", key: k("farts"), body: recBody(`"P-1"`, `"n"`, `"10000-01-01T00:00:00Z"`), reason: syncevent.ReasonBadTimestamp},
		{name: "timestamp before the plausible window (a clock never set)", key: k("epoch"), body: recBody(`"P-1"`, `"n"`, `0`), reason: syncevent.ReasonBadTimestamp},
		{name: "timestamp years ahead", key: k("future"), body: recBody(`"P-1"`, `"n"`, `"2999-01-01T00:00:00Z"`), reason: syncevent.ReasonBadTimestamp},
		{name: "SQL metacharacters", key: k("sql%_;--"), body: recBody(`"P-1'; DROP TABLE patient_records; --"`, `"\\\\' OR 1=1 -- \"quoted\" %_"`, okTS)},
	}
}

// Every kind of bad input published through the real SDK ends quarantined
// with its reason, stored exactly as sent, or refused at publish; none is
// redelivered, none dead-lettered. Keys are used as workflow IDs without a
// prefix, so a key can aim at the poller's own workflow ID.
func TestBadInputCatalogue(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, map[string]string{
		"SYNCBRIDGE_WORKFLOW_ID_PREFIX":     "",
		"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES":  "255", // the compose stack's Temporal
		"SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE": "2000-01-01",
		"SYNCBRIDGE_DEVICE_TIME_MAX_AHEAD":  "8760h",
	})
	cfg := p.config()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	kinds := badCatalogue(hex.EncodeToString(b), contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0))
	if len(kinds) < 25 {
		t.Fatalf("catalogue has %d kinds, want at least 25", len(kinds))
	}

	prod := mqclient.NewProducer(mqclient.Endpoint{URL: p.env.MQURL, AccessKey: p.env.AccessKey, SecretKey: p.env.SecretKey, InstanceID: p.env.InstanceID}, p.env.Topic)
	ids := map[string]badKind{} // message ID -> kind
	for _, k := range kinds {
		id, err := prod.Publish(context.Background(), k.key, syncevent.Tag, []byte(k.body))
		if k.refused {
			if err == nil {
				t.Errorf("%s: published (%s), want a refusal at publish", k.name, id)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: publish: %v", k.name, err)
		}
		ids[id] = k
	}
	p.worker(Options{})
	p.waitDrained(len(ids), 4*time.Minute)
	if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Delivered != st.Published || st.DeadLettered != 0 {
		t.Fatalf("messages redelivered or dead-lettered: %+v", st)
	}

	ctx := context.Background()
	quarantined := map[string]string{}
	rows, err := p.env.DB.QueryContext(ctx, "SELECT message_id, reason, raw_key FROM sync_quarantine")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	rawKeys := map[string][]byte{}
	for rows.Next() {
		var id, reason string
		var raw []byte
		if err := rows.Scan(&id, &reason, &raw); err != nil {
			t.Fatal(err)
		}
		if _, dup := quarantined[id]; dup {
			t.Errorf("message %s quarantined twice", id)
		}
		quarantined[id], rawKeys[id] = reason, raw
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, k := range ids {
		if k.reason != "" {
			if got := quarantined[id]; got != k.reason {
				t.Errorf("%s: quarantine reason %q, want %q", k.name, got, k.reason)
			}
			if k.key != "" && !strings.ContainsRune(k.key, 1) && string(rawKeys[id]) != k.key {
				t.Errorf("%s: quarantine kept a %d-byte key, sent %d bytes", k.name, len(rawKeys[id]), len(k.key))
			}
			continue
		}
		if r, ok := quarantined[id]; ok {
			t.Errorf("%s: quarantined (%s), want stored", k.name, r)
			continue
		}
		want, err := syncevent.Parse(k.key, id, []byte(k.body))
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		var pid, hash string
		var notes sql.NullString
		err = p.env.DB.QueryRowContext(ctx, "SELECT patient_id, notes, payload_hash FROM patient_records WHERE local_record_id = ?", k.key).Scan(&pid, &notes, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			t.Errorf("%s: not stored", k.name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if pid != want.PatientID || notes.String != want.Notes || hash != want.Hash {
			t.Errorf("%s: stored altered (patientId equal %t, notes equal %t, hash equal %t)", k.name, pid == want.PatientID, notes.String == want.Notes, hash == want.Hash)
		}
	}
	for id := range quarantined {
		if _, ok := ids[id]; !ok {
			t.Errorf("unexpected quarantine row for message %s", id)
		}
	}
	t.Logf("%d kinds: %d published, %d quarantined, %d refused at publish", len(kinds), len(ids), len(quarantined), len(kinds)-len(ids))
}

// When the worker's limits are above the server's (misconfigured), the
// pre-checks let through what Temporal then refuses with InvalidArgument:
// the refusal is classified as permanent and the message quarantined, not
// left for redelivery until it is dead-lettered (the 1,100-byte key,
// and a body over Temporal's 2 MiB blob limit even as the raw JSON the
// delivery now carries it as; the 1.8 MB only broke the limit
// base64-encoded).
func TestTemporalRefusalsAreQuarantined(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, map[string]string{
		"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES": "4000",     // the server's is 1000
		"SYNCBRIDGE_MAX_PAYLOAD_BYTES":     "67108864", // the server's is 2 MiB
		"SYNCBRIDGE_MAX_BODY_BYTES":        "4194304",
	})
	good := recBody(`"P-1"`, `"n"`, okTS)
	msgs := []syncevent.OutMessage{
		{Key: strings.Repeat("k", 1100), Tag: syncevent.Tag, Body: []byte(good), Kind: syncevent.KindBadPrefix + "key_too_long"},
		{Key: "huge-body", Tag: syncevent.Tag, Body: []byte(`{"x":"` + strings.Repeat("b", 2_200_000) + `",` + good[1:]), Kind: syncevent.KindBadPrefix + syncevent.ReasonBodyTooLarge},
	}
	ids := p.publish(msgs)
	p.worker(Options{})
	p.waitDrained(len(msgs), 3*time.Minute)
	if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Delivered != st.Published {
		t.Fatalf("refused messages were redelivered: %+v", st)
	}
	for i, m := range msgs {
		var reason string
		if err := p.env.DB.QueryRow("SELECT reason FROM sync_quarantine WHERE message_id = ?", ids[i]).Scan(&reason); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := strings.TrimPrefix(m.Kind, syncevent.KindBadPrefix); reason != want {
			t.Errorf("message %d: reason %q, want %q", i, reason, want)
		}
	}
}
