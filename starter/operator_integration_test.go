package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// A quarantined message whose body was fixed lands when replayed and its
// row is marked replayed; replaying again is a no-op; a replay of an
// unfixed body is quarantined again; discard keeps the row with a reason.
func TestQuarantineReplayAndDiscard(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	bad := []byte(`{"patientData":{"notes":"Ms Example, allergic to penicillin"},"deviceTimestamp":1732600000000}`)
	fixID, err := h.st.Quarantine(ctx, store.QuarantineEntry{Key: "q-fix", MessageID: "msg-Q1", Tag: "SyncEvent",
		Reason: "missing_patient_id", Detail: "patientData.patientId: missing", Body: bad, ConsumedTimes: 1})
	if err != nil {
		t.Fatal(err)
	}
	badID, err := h.st.Quarantine(ctx, store.QuarantineEntry{Key: "q-bad", MessageID: "msg-Q2", Tag: "SyncEvent",
		Reason: "missing_patient_id", Detail: "patientData.patientId: missing", Body: bad, ConsumedTimes: 1})
	if err != nil {
		t.Fatal(err)
	}
	junkID, err := h.st.Quarantine(ctx, store.QuarantineEntry{Key: "q-junk", MessageID: "msg-Q3", Reason: "bad_json", Body: []byte("{not json")})
	if err != nil {
		t.Fatal(err)
	}
	fix, bad2, junk := strconv.FormatInt(fixID, 10), strconv.FormatInt(badID, 10), strconv.FormatInt(junkID, 10)

	// Inspecting never shows patient data by default.
	out := h.mustStarter("quarantine", "list")
	for _, want := range []string{fix, "q-fix", "msg-Q1", "missing_patient_id", "quarantined"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	items := jsonArray(t, h.starterJSON("quarantine", "list"))
	if len(items) != 3 || atInt(t, items[0], "id") != fixID || atString(t, items[0], "key") != "q-fix" || atString(t, items[0], "messageId") != "msg-Q1" ||
		atString(t, items[0], "reason") != "missing_patient_id" || atString(t, items[0], "status") != store.QuarantineQuarantined ||
		atInt(t, items[0], "deliveries") != 1 || atInt(t, items[2], "id") != junkID || atString(t, items[2], "reason") != "bad_json" {
		t.Fatalf("quarantine list --json: %v", items)
	}
	if strings.Contains(fmt.Sprint(items), "penicillin") {
		t.Fatalf("quarantine list --json shows a body")
	}
	out = h.mustStarter("quarantine", "show", fix)
	if strings.Contains(out, "penicillin") || !strings.Contains(out, "masked") || strings.Contains(out, "notes") || strings.Contains(out, "34") || !strings.Contains(out, "JSON object") {
		t.Fatalf("show leaks or hides the wrong things:\n%s", out)
	}
	if out := h.mustStarter("quarantine", "show", fix, "--show-payload"); !strings.Contains(out, "penicillin") {
		t.Fatalf("--show-payload does not show the body:\n%s", out)
	}

	// The data fix, then the replay.
	if _, err := h.env.DB.ExecContext(ctx, "UPDATE sync_quarantine SET body = ? WHERE id = ?", body("P-900", "fixed by ops"), fixID); err != nil {
		t.Fatal(err)
	}
	h.worker()
	out = h.mustStarter("quarantine", "replay", fix)
	if !strings.Contains(out, "inserted, marked replayed") {
		t.Fatalf("replay output:\n%s", out)
	}
	if h.rows("q-fix") != 1 {
		t.Fatal("replayed record not stored")
	}
	q, err := h.st.QuarantineByID(ctx, fixID)
	if err != nil || q.Status != store.QuarantineReplayed || !strings.Contains(q.StatusReason, "replayed: inserted") {
		t.Fatalf("row after replay: %+v %v", q, err)
	}
	h.replayLive(contract.ReplayQuarantineWorkflowID(fixID), "replay_quarantine_inserted.json")
	h.replayLive(contract.ReplayRecordWorkflowID(h.prefix, "q-fix", fixID), "replay_record_inserted.json")
	// Again: a no-op, the row and record unchanged.
	out = h.mustStarter("quarantine", "replay", fix)
	if !strings.Contains(out, "already replayed") || h.rows("q-fix") != 1 {
		t.Fatalf("second replay:\n%s", out)
	}
	// A replayed row cannot be discarded.
	if code, _, _ := h.starter("quarantine", "discard", fix, "--reason", "oops"); code != exitFailure {
		t.Fatalf("discarding a replayed row: exit %d", code)
	}

	// Unfixed: quarantined again, and the command says so.
	code, out, _ := h.starter("quarantine", "replay", bad2)
	if code != exitFailure || !strings.Contains(out, "quarantined again (missing_patient_id)") {
		t.Fatalf("replay of unfixed row: exit %d\n%s", code, out)
	}
	if q, _ := h.st.QuarantineByID(ctx, badID); q.Status != store.QuarantineQuarantined || h.rows("q-bad") != 0 {
		t.Fatalf("unfixed row after replay: %+v", q)
	}
	var n int
	if err := h.env.DB.QueryRow("SELECT COUNT(*) FROM sync_quarantine WHERE message_id = 'msg-Q2'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("unfixed message quarantined %d times, want one row", n)
	}

	// Discard needs a reason, keeps the row, and is idempotent.
	if code, _, _ := h.starter("quarantine", "discard", junk); code != exitUsage {
		t.Fatalf("discard without --reason: exit %d", code)
	}
	if out := h.mustStarter("quarantine", "discard", junk, "--reason", "test junk from a lab device"); !strings.Contains(out, "discarded") {
		t.Fatal(out)
	}
	if out := h.mustStarter("quarantine", "discard", junk, "--reason", "again"); !strings.Contains(out, "already discarded") {
		t.Fatal(out)
	}
	q, err = h.st.QuarantineByID(ctx, junkID)
	if err != nil || q.Status != store.QuarantineDiscarded || !strings.Contains(q.StatusReason, "test junk from a lab device") {
		t.Fatalf("discarded row: %+v %v", q, err)
	}
	if out := h.mustStarter("quarantine", "list", "--status", "discarded"); !strings.Contains(out, junk) || strings.Contains(out, "q-fix") {
		t.Fatalf("list --status discarded:\n%s", out)
	}
	items = jsonArray(t, h.starterJSON("quarantine", "list", "--status", "discarded"))
	if len(items) != 1 || atInt(t, items[0], "id") != junkID || atString(t, items[0], "status") != store.QuarantineDiscarded ||
		!strings.Contains(atString(t, items[0], "statusReason"), "test junk from a lab device") || atString(t, items[0], "updatedAt") == "" {
		t.Fatalf("quarantine list --status discarded --json: %v", items)
	}
	if items := jsonArray(t, h.starterJSON("quarantine", "list", "--after", fix, "--limit", "1")); len(items) != 1 || atInt(t, items[0], "id") != badID {
		t.Fatalf("quarantine list --after --limit --json: %v", items)
	}
	if code, _, _ := h.starter("quarantine", "show", "999999"); code != exitFailure {
		t.Fatalf("show of a missing row: exit %d", code)
	}
}

// Reconciliation replays rows marked replay_requested (e.g. a replay whose
// start failed) and the replay marks them replayed.
func TestReconcileReplaysRequestedQuarantineRows(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	id, err := h.st.Quarantine(ctx, store.QuarantineEntry{Key: "q-rec", MessageID: "msg-R", Reason: "bad_timestamp", Body: body("P-1", "fixed")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.st.RequestReplay(ctx, id, "marked by hand"); err != nil {
		t.Fatal(err)
	}
	h.worker()
	rep := reconcileJSON(t, h, "--dry-run")
	if rep.ReplaysRequested != 1 || rep.ReplaysStarted != 0 {
		t.Fatalf("dry run: %+v", rep)
	}
	rep = reconcileJSON(t, h)
	if rep.ReplaysRequested != 1 || rep.ReplaysStarted != 1 || len(rep.ReplayIDs) != 1 || rep.ReplayIDs[0] != id {
		t.Fatalf("report: %+v", rep)
	}
	testwait.Until(t, time.Minute, "replayed row", func() bool {
		q, err := h.st.QuarantineByID(ctx, id)
		return err == nil && q.Status == store.QuarantineReplayed
	})
	if h.rows("q-rec") != 1 {
		t.Fatal("record not stored")
	}
}

// A conflict resolved "incoming" replaces the row once, keeps the replaced
// version, and resolving it again changes nothing.
func TestConflictResolveIncomingIsAuditedAndIdempotent(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	key := "c-1"
	first, second := event(t, key, "msg-C1", body("P-500", "first version")), event(t, key, "msg-C2", body("P-500", "corrected version"))
	if out, err := h.st.Insert(ctx, first); err != nil || out != store.Inserted {
		t.Fatal(out, err)
	}
	if out, err := h.st.Insert(ctx, second); err != nil || out != store.Conflict {
		t.Fatal(out, err)
	}
	cs, err := h.st.Conflicts(ctx, key)
	if err != nil || len(cs) != 1 {
		t.Fatal(cs, err)
	}
	cid := strconv.FormatInt(cs[0].ID, 10)

	out := h.mustStarter("conflicts", "list")
	if !strings.Contains(out, key) || !strings.Contains(out, "open") || !strings.Contains(out, second.Hash[:12]) {
		t.Fatalf("list:\n%s", out)
	}
	out = h.mustStarter("conflicts", "show", key)
	if strings.Contains(out, "corrected version") || strings.Contains(out, "P-500") {
		t.Fatalf("show leaks patient data:\n%s", out)
	}
	if code, _, _ := h.starter("conflicts", "resolve", key); code != exitUsage {
		t.Fatalf("resolve without --keep: exit %d", code)
	}

	h.worker()
	out = h.mustStarter("conflicts", "resolve", key, "--keep", "incoming")
	if !strings.Contains(out, "resolved_incoming") {
		t.Fatalf("resolve:\n%s", out)
	}
	row, _, err := h.st.Record(ctx, key)
	if err != nil || row.Hash != second.Hash || row.MessageID != "msg-C2" || row.Notes != "corrected version" || string(row.Payload) != string(second.Payload) {
		t.Fatalf("row after resolve: %+v %v", row, err)
	}
	cs, _ = h.st.Conflicts(ctx, key)
	if len(cs) != 2 || cs[0].Status != store.ConflictResolvedIncoming || cs[0].ResolvedAt.IsZero() ||
		cs[1].Hash != first.Hash || cs[1].ExistingHash != second.Hash || cs[1].Status != store.ConflictResolvedIncoming {
		t.Fatalf("conflicts after resolve: %+v", cs)
	}
	updated := row.UpdatedAt
	items := jsonArray(t, h.starterJSON("conflicts", "list", "--status", "all", "--key", key))
	if len(items) != 2 || atInt(t, items[0], "id") != cs[0].ID || atString(t, items[0], "status") != store.ConflictResolvedIncoming ||
		atString(t, items[0], "resolvedAt") == "" || atString(t, items[0], "incomingHash") != second.Hash || atString(t, items[0], "storedHash") != first.Hash ||
		atString(t, items[1], "incomingHash") != first.Hash || atString(t, items[1], "key") != key {
		t.Fatalf("conflicts list --status all --json: %v", items)
	}
	if items := jsonArray(t, h.starterJSON("conflicts", "list")); len(items) != 0 {
		t.Fatalf("conflicts list --json after the resolve: %v", items)
	}
	h.replayLive(contract.ResolveConflictWorkflowID(key, cs[0].ID), "resolve_conflict_incoming.json")

	// Twice: without --id there is nothing open; with it, the workflow
	// runs again and reports a no-op.
	if out := h.mustStarter("conflicts", "resolve", key, "--keep", "incoming"); !strings.Contains(out, "no open conflict") {
		t.Fatal(out)
	}
	if out := h.mustStarter("conflicts", "resolve", key, "--keep", "incoming", "--id", cid); !strings.Contains(out, "already resolved_incoming; nothing changed") {
		t.Fatal(out)
	}
	if code, _, _ := h.starter("conflicts", "resolve", key, "--keep", "existing", "--id", cid); code != exitFailure {
		t.Fatalf("resolving the other way after the fact: exit %d", code)
	}
	row, _, _ = h.st.Record(ctx, key)
	if row.Hash != second.Hash || !row.UpdatedAt.Equal(updated) || h.rows(key) != 1 {
		t.Fatalf("second resolve changed the row: %+v", row)
	}
	// The resolution is recorded in Temporal.
	var res contract.ResolveConflictResult
	if err := h.env.Client.GetWorkflow(ctx, contract.ResolveConflictWorkflowID(key, cs[0].ID), "").Get(ctx, &res); err != nil || res.Changed {
		t.Fatalf("last resolve workflow: %+v %v", res, err)
	}

	// inspect shows it all, masked.
	out = h.mustStarter("inspect", key)
	if strings.Contains(out, "corrected version") || !strings.Contains(out, "resolved_incoming") || !strings.Contains(out, "stored record:") {
		t.Fatalf("inspect:\n%s", out)
	}
}

// `inspect` shows a key's workflow runs, history and row.
func TestInspectKey(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	h.worker()
	h.startRecord("ins-1", contract.Delivery{MessageID: "msg-I", ReceiptHandle: "h-stale", Tag: "SyncEvent", Body: body("P-42", "secret note"), ConsumedTimes: 1})
	testwait.Until(t, time.Minute, "record", func() bool { return h.rows("ins-1") == 1 })
	testwait.Until(t, 30*time.Second, "record workflow to complete", func() bool {
		_, st := h.latestRun("ins-1")
		return st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	out := h.mustStarter("inspect", "ins-1")
	for _, want := range []string{"status:      completed", "activity_task_completed", "outcome inserted", "patient id:  ***", "quarantine: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q", want)
		}
	}
	if strings.Contains(out, "secret note") || strings.Contains(out, "P-42") {
		t.Fatalf("inspect leaks patient data:\n%s", out)
	}
	if out := h.mustStarter("inspect", "ins-1", "--show-payload"); !strings.Contains(out, "secret note") {
		t.Fatalf("--show-payload:\n%s", out)
	}
	// With another key, the result cannot be read, and inspect says so
	// instead of dropping the line.
	h.vars["SYNCBRIDGE_PAYLOAD_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	h.vars["SYNCBRIDGE_PAYLOAD_KEY_ID"] = "someone-else"
	if out := h.mustStarter("inspect", "ins-1"); !strings.Contains(out, "result:      cannot be read") || strings.Contains(out, "outcome inserted") {
		t.Fatalf("inspect with the wrong key:\n%s", out)
	}
	if code, _, _ := h.starter("inspect", "no-such-key"); code != exitFailure {
		t.Fatalf("inspect of an unknown key: exit %d", code)
	}
}

// `pollers stop` is graceful: after it, every published message is either
// committed and acked or still untouched in the broker: none is consumed
// and left hanging. `pollers start` then drains the rest. Publishing goes
// through `starter publish`. The broker is slowed down (one message per
// consume, 300 ms per call) so the stop lands mid-drain: the poll activity
// hears of the stop only at its next heartbeat, up to a minute later.
func TestPollersStopLeavesNothingHalfProcessed(t *testing.T) {
	const total = 600
	h := newHarness(t, mqemu.Config{InvisibleTime: 5 * time.Minute},
		map[string]string{"SYNCBRIDGE_POLLERS": "2", "SYNCBRIDGE_BATCH_SIZE": "1"})
	stopWorker := h.worker()
	out := h.mustStarter("publish", "--count", strconv.Itoa(total), "--dup-rate", "0", "--bad-rate", "0", "--seed", "11", "--key-prefix", "stop-")
	if !strings.Contains(out, "published 600 messages") {
		t.Fatal(out)
	}
	h.env.MQ.SetFaults(mqemu.Faults{Latency: 300 * time.Millisecond})
	h.mustStarter("pollers", "start")
	testwait.Until(t, time.Minute, "some records", func() bool {
		n, _ := h.st.CountRecords(context.Background())
		return n >= 20
	})
	out = h.mustStarter("pollers", "stop")
	if strings.Count(out, "stopped (completed)") != 2 {
		t.Fatalf("stop:\n%s", out)
	}
	// Records in flight finish on their own.
	cfg := h.config()
	testwait.Until(t, time.Minute, "records in flight to finish", func() bool {
		n, err := countRunningRecords(context.Background(), h.env.Client, cfg)
		return err == nil && n == 0
	})
	st := h.env.MQ.Stats(h.env.Topic, h.env.Group)
	rows, err := h.st.CountRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.InFlight != 0 || st.Published != total || st.Acked != rows || rows+st.Ready != total {
		t.Fatalf("after stop: %d rows, broker %+v: some message was consumed and not finished", rows, st)
	}
	if rows == total {
		t.Log("the pollers drained everything before the stop took effect; the stop was still clean")
	} else {
		t.Logf("stopped mid-drain: %d stored and acked, %d untouched in the broker", rows, st.Ready)
	}
	out = h.mustStarter("pollers", "status")
	if strings.Count(out, "completed") != 2 || !strings.Contains(out, "records in flight: 0") {
		t.Fatalf("status:\n%s", out)
	}

	// Full speed for the rest: a worker with full batches.
	h.env.MQ.SetFaults(mqemu.Faults{})
	stopWorker()
	h.vars["SYNCBRIDGE_BATCH_SIZE"] = "16"
	h.worker()
	h.mustStarter("pollers", "start")
	testwait.Until(t, 5*time.Minute, "drain after restart", func() bool {
		st := h.env.MQ.Stats(h.env.Topic, h.env.Group)
		n, _ := h.st.CountRecords(context.Background())
		return n == total && st.Ready == 0 && st.InFlight == 0
	})
	var dup int
	if err := h.env.DB.QueryRow("SELECT COUNT(*) - COUNT(DISTINCT local_record_id) FROM patient_records").Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("duplicate rows: %d %v", dup, err)
	}
}
