package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/testwait"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// reconcileFields are the report's --json field names, a contract with
// scripts: renaming one breaks them.
var reconcileFields = []string{
	"canceled", "committed", "dryRun", "errorSamples", "errors", "failed", "keysOmitted", "noInput", "quarantined",
	"redriven", "redrivenKeys", "replayIds", "replaysRequested", "replaysStarted", "runId", "runs", "skipped", "startedAt",
	"stuck", "stuckOmitted", "stuckRecords", "superseded", "terminated", "timedOut", "workflowId", "wouldRedrive",
}

func reconcileJSON(t *testing.T, h *harness, args ...string) reconcileView {
	t.Helper()
	out := h.mustStarter(append([]string{"reconcile", "--json", "--rate", "50/s"}, args...)...)
	m := jsonObject(t, decodeJSON(t, out))
	for _, f := range reconcileFields {
		if _, ok := m[f]; !ok {
			t.Errorf("report lacks %q:\n%s", f, out)
		}
	}
	for _, s := range jsonArray(t, m["stuckRecords"]) {
		for _, f := range []string{"key", "workflowId", "runId", "startedAt", "pendingActivity", "attempt"} {
			at(t, s, f)
		}
	}
	var rep reconcileView
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	return rep
}

// A record whose workflow was terminated before its insert is re-driven
// from its recorded input and lands once; one terminated after its insert
// is left alone; a dry run changes nothing; a second reconciliation finds
// the re-driven key superseded and starts nothing.
func TestReconcileRedrivesOnlyUncommittedRecords(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()

	// No worker yet: both records are started as the poller would, and
	// terminated before any insert ran, as an operator might during an
	// incident. keyB's row was committed anyway (say its insert ran just
	// before the operator terminated it).
	keyA, keyB := "rec-A", "rec-B"
	oldA := h.startRecord(keyA, contract.Delivery{MessageID: "msg-A", ReceiptHandle: "stale-handle-A", Tag: "SyncEvent", Body: body("P-100", "first visit"), ConsumedTimes: 1})
	oldB := h.startRecord(keyB, contract.Delivery{MessageID: "msg-B", ReceiptHandle: "stale-handle-B", Tag: "SyncEvent", Body: body("P-200", "follow-up"), ConsumedTimes: 1})
	if _, err := h.st.Insert(ctx, event(t, keyB, "msg-B", body("P-200", "follow-up"))); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keyA, keyB} {
		if err := h.env.Client.TerminateWorkflow(ctx, contract.RecordWorkflowID(h.prefix, k), "", "operator terminated during incident"); err != nil {
			t.Fatal(err)
		}
	}
	h.waitVisible(fmt.Sprintf("WorkflowType = 'RecordWorkflow' AND TaskQueue = '%s' AND ExecutionStatus = 'Terminated'", h.env.TaskQueue), 2)
	h.worker()

	// Dry run: reported, nothing changed.
	rep := reconcileJSON(t, h, "--dry-run")
	if !rep.DryRun || rep.Terminated != 2 || rep.WouldRedrive != 1 || rep.Committed != 1 || rep.Redriven != 0 ||
		len(rep.RedrivenKeys) != 1 || rep.RedrivenKeys[0] != keyA || rep.Errors != 0 {
		t.Fatalf("dry run report: %+v", rep)
	}
	if run, _ := h.latestRun(keyA); run != oldA {
		t.Fatalf("dry run started a new run for %s", keyA)
	}
	if h.rows(keyA) != 0 {
		t.Fatal("dry run stored a row")
	}

	// The real thing.
	rep = reconcileJSON(t, h)
	if rep.DryRun || rep.Terminated != 2 || rep.Redriven != 1 || rep.Committed != 1 ||
		len(rep.RedrivenKeys) != 1 || rep.RedrivenKeys[0] != keyA || rep.Errors != 0 {
		t.Fatalf("report: %+v", rep)
	}
	testwait.Until(t, time.Minute, "re-driven record to complete", func() bool {
		run, st := h.latestRun(keyA)
		return run != oldA && st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	if n := h.rows(keyA); n != 1 {
		t.Fatalf("%s: %d rows, want 1", keyA, n)
	}
	row, _, err := h.st.Record(ctx, keyA)
	if err != nil || row.MessageID != "msg-A" || row.PatientID != "P-100" {
		t.Fatalf("re-driven row: %+v %v", row, err)
	}
	// The stale handle was refused, harmlessly.
	var res contract.RecordResult
	if err := h.env.Client.GetWorkflow(ctx, contract.RecordWorkflowID(h.prefix, keyA), "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != contract.OutcomeInserted || res.AckExpired != 1 {
		t.Fatalf("re-driven result: %+v", res)
	}
	if run, st := h.latestRun(keyB); run != oldB || st != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("committed %s was touched: latest run %s %s", keyB, run, st)
	}

	h.replayLive(contract.ReconcileWorkflowID, "reconcile_redrive.json")

	// Again: the terminated run of keyA is superseded now; nothing starts.
	rep = reconcileJSON(t, h)
	if rep.Redriven != 0 || rep.Superseded != 1 || rep.Committed != 1 || rep.Errors != 0 {
		t.Fatalf("second report: %+v", rep)
	}
	if n := h.rows(keyA); n != 1 {
		t.Fatalf("%s: %d rows after second reconcile", keyA, n)
	}

	// The text report names what was done.
	out := h.mustStarter("reconcile", "--since", "1h")
	for _, want := range []string{"terminated 2", "committed 1", "superseded by a newer run 1", "re-driven:   0"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

// One reconciliation at a time: a second start is refused, naming the
// running one.
func TestSecondReconcileIsRefused(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	// No worker: the first reconciliation stays running.
	js := h.starterJSON("reconcile", "--detach")
	fields := []string{atString(t, js, "workflowId"), atString(t, js, "runId")}
	if fields[0] != contract.ReconcileWorkflowID || fields[1] == "" {
		t.Fatalf("--detach --json printed %v", js)
	}
	code, _, errOut := h.starter("reconcile", "--dry-run")
	if code != exitFailure || !strings.Contains(errOut, "already running") || !strings.Contains(errOut, fields[1]) {
		t.Fatalf("second reconcile: exit %d, stderr %q", code, errOut)
	}
}

// A record stuck on a failing insert is reported with its pending activity
// and last error, and not re-driven.
func TestReconcileReportsStuckRecords(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	// The worker starts on a sound database (its start-up check would
	// refuse a missing table); then every insert fails (not as bad data)
	// and the record retries forever.
	h.worker()
	if _, err := h.env.DB.ExecContext(ctx, "RENAME TABLE patient_records TO patient_records_away"); err != nil {
		t.Fatal(err)
	}
	h.startRecord("stuck-1", contract.Delivery{MessageID: "msg-S", ReceiptHandle: "h", Tag: "SyncEvent", Body: body("P-300", "x"), ConsumedTimes: 1})
	testwait.Until(t, time.Minute, "insert to fail", func() bool {
		d, err := h.env.Client.DescribeWorkflowExecution(ctx, contract.RecordWorkflowID(h.prefix, "stuck-1"), "")
		return err == nil && len(d.GetPendingActivities()) > 0 && d.GetPendingActivities()[0].GetLastFailure() != nil
	})
	rep := reconcileJSON(t, h, "--stuck-after", "1ms")
	if rep.Stuck != 1 || len(rep.StuckRecords) != 1 || rep.Redriven != 0 {
		t.Fatalf("report: %+v", rep)
	}
	s := rep.StuckRecords[0]
	if s.Key != "stuck-1" || s.PendingActivity != "Insert" || s.Attempt < 1 || !strings.Contains(s.LastFailure, "1146") {
		t.Fatalf("stuck record: %+v", s)
	}
	// The record heals once the table is back.
	if _, err := h.env.DB.ExecContext(ctx, "RENAME TABLE patient_records_away TO patient_records"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 2*time.Minute, "stuck record to land", func() bool { return h.rows("stuck-1") == 1 })
}

// With payload encryption on, a re-drive sends the recorded (encrypted)
// payloads back unchanged and the worker decrypts them as usual; inspect
// decrypts through the same key.
func TestReconcileRedrivesEncryptedRecord(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	h := newHarness(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_PAYLOAD_KEY": key})
	ctx := context.Background()
	tc, err := workerapp.Dial(ctx, h.config(), h.env.Logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	id := contract.RecordWorkflowID(h.prefix, "enc-1")
	_, err = tc.SignalWithStartWorkflow(ctx, id, contract.SignalDelivery,
		contract.Delivery{MessageID: "msg-E", ReceiptHandle: "stale", Tag: "SyncEvent", Body: body("P-77", "encrypted note"), ConsumedTimes: 1},
		client.StartWorkflowOptions{ID: id, TaskQueue: h.env.TaskQueue}, contract.RecordWorkflowName,
		contract.RecordInput{Key: "enc-1", Topic: h.env.Topic, Group: h.env.Group})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.TerminateWorkflow(ctx, id, "", "incident"); err != nil {
		t.Fatal(err)
	}
	h.waitVisible(fmt.Sprintf("WorkflowType = 'RecordWorkflow' AND TaskQueue = '%s' AND ExecutionStatus = 'Terminated'", h.env.TaskQueue), 1)
	h.worker()
	rep := reconcileJSON(t, h)
	if rep.Redriven != 1 || rep.Errors != 0 {
		t.Fatalf("report: %+v", rep)
	}
	testwait.Until(t, time.Minute, "encrypted record to land", func() bool { return h.rows("enc-1") == 1 })
	testwait.Until(t, 30*time.Second, "record to complete", func() bool {
		_, st := h.latestRun("enc-1")
		return st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	out := h.mustStarter("inspect", "enc-1")
	if !strings.Contains(out, "outcome inserted") || strings.Contains(out, "encrypted note") {
		t.Fatalf("inspect:\n%s", out)
	}
}

// A terminated record that had received two messages for its key is
// re-driven as one new run that commits both: the first as the row, the
// changed one as a conflict.
func TestReconcileRedrivesEveryRecordedDelivery(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	old := h.startRecord("multi", contract.Delivery{MessageID: "msg-1", ReceiptHandle: "h1", Tag: "SyncEvent", Body: body("P-1", "v1"), ConsumedTimes: 1})
	id := contract.RecordWorkflowID(h.prefix, "multi")
	if err := h.env.Client.SignalWorkflow(ctx, id, "", contract.SignalDelivery,
		contract.Delivery{MessageID: "msg-2", ReceiptHandle: "h2", Tag: "SyncEvent", Body: body("P-1", "v2"), ConsumedTimes: 1}); err != nil {
		t.Fatal(err)
	}
	if err := h.env.Client.TerminateWorkflow(ctx, id, "", "incident"); err != nil {
		t.Fatal(err)
	}
	h.waitVisible(fmt.Sprintf("WorkflowType = 'RecordWorkflow' AND TaskQueue = '%s' AND ExecutionStatus = 'Terminated'", h.env.TaskQueue), 1)
	h.worker()
	if rep := reconcileJSON(t, h); rep.Redriven != 1 || rep.Errors != 0 {
		t.Fatalf("report: %+v", rep)
	}
	var res contract.RecordResult
	testwait.Until(t, time.Minute, "re-driven run", func() bool {
		run, st := h.latestRun("multi")
		return run != old && st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	if err := h.env.Client.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 2 || res.Outcome != contract.OutcomeConflict {
		t.Fatalf("one run should have taken both deliveries: %+v", res)
	}
	cs, _ := h.st.Conflicts(ctx, "multi")
	if h.rows("multi") != 1 || len(cs) != 1 || cs[0].MessageID != "msg-2" {
		t.Fatalf("rows %d, conflicts %+v", h.rows("multi"), cs)
	}
}
