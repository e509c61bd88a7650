package main

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
)

// `pollers stop` lasts across worker restarts until `pollers start`.
func TestPollersStopSurvivesWorkerRestart(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1"})
	cfg := h.config()
	id := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0)
	status := func() enumspb.WorkflowExecutionStatus {
		d, err := h.env.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			return enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED
		}
		return d.GetWorkflowExecutionInfo().GetStatus()
	}
	waitStatus := func(want enumspb.WorkflowExecutionStatus, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: poller status %s, want %s", what, status(), want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Workers of this test start pollers themselves, as in production.
	h.vars["SYNCBRIDGE_START_POLLERS"] = "true"
	stop := h.worker()
	waitStatus(enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, "first worker")

	h.vars["SYNCBRIDGE_START_POLLERS"] = "false" // the starter's own view
	h.mustStarter("pollers", "stop")
	waitStatus(enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, "after stop")
	out := h.mustStarter("pollers", "status")
	if !strings.Contains(out, "stop intent: stopped") {
		t.Errorf("status does not show the stop intent:\n%s", out)
	}
	js := h.starterJSON("pollers", "status")
	ws := jsonArray(t, at(t, js, "workflows"))
	if atString(t, js, "stopIntent") != "stopped" || atInt(t, js, "configured") != 1 || atInt(t, js, "recordsInFlight") != 0 ||
		len(ws) != 1 || atString(t, ws[0], "workflowId") != id || atString(t, ws[0], "status") != "completed" || atString(t, ws[0], "startedAt") == "" {
		t.Errorf("pollers status --json: %v", js)
	}

	stop()
	h.vars["SYNCBRIDGE_START_POLLERS"] = "true"
	h.worker()
	time.Sleep(2 * time.Second)
	if s := status(); s != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("a restarted worker undid the stop: poller %s", s)
	}

	h.vars["SYNCBRIDGE_START_POLLERS"] = "false"
	h.mustStarter("pollers", "start")
	waitStatus(enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, "after start")
	if js := h.starterJSON("pollers", "status"); atString(t, js, "stopIntent") != "none" || atString(t, jsonArray(t, at(t, js, "workflows"))[0], "status") != "running" {
		t.Errorf("pollers status --json after start: %v", js)
	}
}
