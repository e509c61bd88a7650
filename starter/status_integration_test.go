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
	waitFor(t, 4*time.Minute, "the drain", func() bool {
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
	for rows.Next() {
		var reason string
		var keyless bool
		var n int
		if err := rows.Scan(&reason, &keyless, &n); err != nil {
			t.Fatal(err)
		}
		total += n
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

	// A record with no worker to run it: stuck, waiting on a workflow task.
	stop()
	h.startRecord("st-orphan", contract.Delivery{MessageID: "msg-orphan", ReceiptHandle: "h", Body: body("P-1", "x")})
	time.Sleep(50 * time.Millisecond)
	out = h.mustStarter("status", "--stuck-after", "1ms")
	if !regexp.MustCompile(`records running longer than 1ms: 1\n(.*\n)?\s+st-orphan\s+\S+\s+a workflow task \(no worker\?\)`).MatchString(out) {
		t.Errorf("status does not list the orphaned record as stuck on a workflow task")
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
