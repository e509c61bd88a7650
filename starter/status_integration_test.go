package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// After a real drain (published with `starter publish`, drained by the
// production worker): `starter status` shows the conflicts and quarantine
// the database holds, keyless quarantines apart, the pollers and the
// worker; a record left without a worker is listed as stuck with what it
// waits on; `conflicts show` lists the differing fields, masked, and which
// version the device wrote first.
func TestStatusAndConflictDiffAfterADrain(t *testing.T) {
	h := newHarness(t, mqemu.Config{InvisibleTime: time.Minute}, map[string]string{
		"SYNCBRIDGE_START_POLLERS": "true", "SYNCBRIDGE_POLLERS": "1",
	})
	ctx := context.Background()
	h.mustStarter("publish", "--count", "40", "--dup-rate", "0.1", "--changed-rate", "0.25", "--bad-rate", "0.2", "--seed", "9", "--key-prefix", "st-")
	stop := h.worker()
	testwait.Until(t, 4*time.Minute, "the drain", func() bool {
		s := h.env.MQ.Stats(h.env.Topic, h.env.Group)
		// publish skips the generator's invalid UTF-8 message: 39 of 40.
		return s.Published >= 39 && s.Acked == s.Published && s.Ready == 0 && s.InFlight == 0
	})
	// A keyless message has no workflow: the Web UI cannot show it.
	if _, err := h.st.Quarantine(ctx, store.QuarantineEntry{MessageID: "msg-keyless", Reason: "missing_key", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	out := h.mustStarter("status")
	var open int
	if err := h.env.DB.QueryRow("SELECT COUNT(*) FROM sync_conflicts WHERE status = 'open'").Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open == 0 {
		t.Fatal("the drain made no conflict; the generator options are wrong")
	}
	if !strings.Contains(out, fmt.Sprintf("open conflicts: %d ", open)) {
		t.Errorf("status does not report the %d open conflicts", open)
	}
	rows, err := h.env.DB.Query(`SELECT reason, local_record_id IS NULL OR local_record_id = '', COUNT(*) FROM sync_quarantine GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	byReason := map[string]int64{}
	for rows.Next() {
		var reason string
		var keyless bool
		var n int
		if err := rows.Scan(&reason, &keyless, &n); err != nil {
			t.Fatal(err)
		}
		total += n
		byReason[fmt.Sprint(reason, keyless)] = int64(n)
		kl := "no"
		if keyless {
			kl = `yes \(no workflow\)`
		}
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(reason) + `\s+` + kl + `\s+` + fmt.Sprint(n) + `\s`).MatchString(out) {
			t.Errorf("status lacks quarantine line %s keyless=%v count %d", reason, keyless, n)
		}
	}
	rows.Close()
	if !strings.Contains(out, fmt.Sprintf("quarantined, waiting for a decision: %d\n", total)) || total < 2 {
		t.Errorf("status quarantine total is not %d", total)
	}
	cfg := h.config()
	if !strings.Contains(out, contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0)+"  running") {
		t.Errorf("status does not show the running poller")
	}
	if regexp.MustCompile(`workers polling task queue .*\n  none`).MatchString(out) {
		t.Errorf("status shows no worker while one runs")
	}
	if !regexp.MustCompile(`records running longer than 15m0s: 0\n`).MatchString(out) {
		t.Errorf("status lists stuck records after a clean drain")
	}
	checkStatusJSON(t, h, open, byReason)
	checkListingsJSON(t, h, total)

	// A record with no worker to run it: stuck, waiting on a workflow task.
	stop()
	h.startRecord("st-orphan", contract.Delivery{MessageID: "msg-orphan", ReceiptHandle: "h", Body: body("P-1", "x")})
	time.Sleep(50 * time.Millisecond)
	out = h.mustStarter("status", "--stuck-after", "1ms")
	if !regexp.MustCompile(`records running longer than 1ms: 1\n(.*\n)?\s+st-orphan\s+\S+\s+a workflow task \(no worker\?\)`).MatchString(out) {
		t.Errorf("status does not list the orphaned record as stuck on a workflow task")
	}
	js := h.starterJSON("status", "--stuck-after", "1ms")
	if atInt(t, js, "stuck.count") != 1 || atFloat(t, js, "stuck.afterSeconds") != 0.001 {
		t.Errorf("status --json: stuck %v", at(t, js, "stuck"))
	}
	if recs := jsonArray(t, at(t, js, "stuck.records")); len(recs) != 1 || atString(t, recs[0], "key") != "st-orphan" ||
		atString(t, recs[0], "waitsOn") != "workflow task" || atString(t, recs[0], "pendingActivity") != "" ||
		atString(t, recs[0], "workflowId") != contract.RecordWorkflowID(h.prefix, "st-orphan") {
		t.Errorf("status --json: stuck records %v", recs)
	}

	// The field diff of one conflict.
	var key string
	var payload []byte
	if err := h.env.DB.QueryRow(`SELECT c.local_record_id, r.payload FROM sync_conflicts c JOIN patient_records r USING (local_record_id)
		WHERE c.status = 'open' ORDER BY c.id LIMIT 1`).Scan(&key, &payload); err != nil {
		t.Fatal(err)
	}
	out = h.mustStarter("conflicts", "show", key)
	if !strings.Contains(out, "first by device timestamp: ") || !regexp.MustCompile(`(?m)^\s+patientData\.notes\s+"\*\*\*"`).MatchString(out) {
		t.Errorf("conflicts show lacks the masked field diff or the device-time order")
	}
	stored, _, _ := h.st.Record(ctx, key)
	if stored.Notes != "" && strings.Contains(out, stored.Notes) {
		t.Errorf("conflicts show leaks the stored notes without --show-payload")
	}
	out = h.mustStarter("conflicts", "show", key, "--show-payload")
	if stored.Notes != "" && !strings.Contains(out, fmt.Sprintf("%q", stored.Notes)) {
		t.Errorf("--show-payload does not show the stored notes in the diff")
	}
}

// `status --json` reports what the database and Temporal hold after the
// drain: the same numbers as the text, under stable field names.
func checkStatusJSON(t *testing.T, h *harness, open int, quarantineByReason map[string]int64) {
	t.Helper()
	js := h.starterJSON("status", "--window", "1h")
	var stored int64
	if err := h.env.DB.QueryRow("SELECT COUNT(*) FROM patient_records").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if n := atInt(t, js, "drain.recordsStored"); n != stored || stored == 0 {
		t.Errorf("drain.recordsStored %d, database holds %d rows", n, stored)
	}
	if atInt(t, js, "drain.windowSeconds") != 3600 || atInt(t, js, "drain.recordsInFlight") < 0 || atInt(t, js, "drain.recordsCompleted") == 0 {
		t.Errorf("drain: %v", at(t, js, "drain"))
	}
	if atInt(t, js, "conflicts.open") != int64(open) || atInt(t, js, "conflicts.keys") == 0 || atString(t, js, "conflicts.oldestReceivedAt") == "" {
		t.Errorf("conflicts: %v, want %d open", at(t, js, "conflicts"), open)
	}
	var waiting int64
	reasons := jsonArray(t, at(t, js, "quarantine.byReason"))
	for _, r := range reasons {
		k := fmt.Sprint(atString(t, r, "reason"), atBool(t, r, "keyless"))
		if atInt(t, r, "count") != quarantineByReason[k] || atString(t, r, "oldestQuarantinedAt") == "" {
			t.Errorf("quarantine reason %v, database says %d", r, quarantineByReason[k])
		}
		waiting += atInt(t, r, "count")
	}
	if len(reasons) != len(quarantineByReason) || atInt(t, js, "quarantine.waiting") != waiting {
		t.Errorf("quarantine: %v, database %v", at(t, js, "quarantine"), quarantineByReason)
	}
	cfg := h.config()
	pollers := jsonArray(t, at(t, js, "pollers.workflows"))
	if atInt(t, js, "pollers.configured") != 1 || len(pollers) != 1 ||
		atString(t, pollers[0], "workflowId") != contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0) || atString(t, pollers[0], "status") != "running" {
		t.Errorf("pollers: %v", at(t, js, "pollers"))
	}
	if len(jsonArray(t, at(t, js, "workers.polling"))) == 0 || atString(t, js, "workers.taskQueue") != cfg.Temporal.TaskQueue {
		t.Errorf("workers: %v", at(t, js, "workers"))
	}
	if atInt(t, js, "stuck.count") != 0 || len(jsonArray(t, at(t, js, "stuck.records"))) != 0 || atInt(t, js, "stuck.afterSeconds") != 900 {
		t.Errorf("stuck: %v", at(t, js, "stuck"))
	}
}

// `conflicts list --json` and `quarantine list --json` list the database's
// rows, oldest first, and no payload.
func checkListingsJSON(t *testing.T, h *harness, quarantined int) {
	t.Helper()
	rows, err := h.env.DB.Query("SELECT id, local_record_id FROM sync_conflicts WHERE status = 'open' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rows.Next() {
		var id int64
		var key string
		if err := rows.Scan(&id, &key); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(id, " ", key))
	}
	rows.Close()
	var got []string
	for _, c := range jsonArray(t, h.starterJSON("conflicts", "list")) {
		got = append(got, fmt.Sprint(atInt(t, c, "id"), " ", atString(t, c, "key")))
		if atString(t, c, "status") != "open" || len(atString(t, c, "incomingHash")) != 64 || len(atString(t, c, "storedHash")) != 64 ||
			atString(t, c, "receivedAt") == "" || atString(t, c, "messageId") == "" {
			t.Errorf("conflict item %v", c)
		}
		if _, ok := jsonObject(t, c)["resolvedAt"]; ok {
			t.Errorf("an open conflict has resolvedAt: %v", c)
		}
		if _, ok := jsonObject(t, c)["payload"]; ok {
			t.Errorf("conflicts list shows a payload")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("conflicts list --json: %v, database %v", got, want)
	}

	items := jsonArray(t, h.starterJSON("quarantine", "list"))
	keyless := 0
	for _, q := range items {
		if atString(t, q, "status") != store.QuarantineQuarantined || atString(t, q, "reason") == "" || atString(t, q, "quarantinedAt") == "" ||
			atInt(t, q, "id") <= 0 {
			t.Errorf("quarantine item %v", q)
		}
		if atString(t, q, "messageId") == "msg-keyless" && atString(t, q, "key") == "" {
			keyless++
		}
	}
	if len(items) != quarantined || keyless != 1 {
		t.Errorf("quarantine list --json: %d items (%d keyless msg-keyless), database %d", len(items), keyless, quarantined)
	}
	if len(jsonArray(t, h.starterJSON("quarantine", "list", "--status", "discarded"))) != 0 {
		t.Errorf("quarantine list --status discarded --json is not an empty array")
	}
}
