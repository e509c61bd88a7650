package main

import (
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// The operator's commands against real versioned workers of two builds:
// make the first current, ramp to the second and roll the ramp back,
// promote, see the old build drained, roll back to it. The records side of
// an upgrade is workerapp's TestUpgradeAndRollbackMidDrain.
func TestDeployCommands(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_VERSIONING": "true"})
	h.vars["SYNCBRIDGE_DEPLOYMENT_NAME"] = h.env.TaskQueue
	deployWaitEvery = 200 * time.Millisecond

	if code, _, errOut := h.starter("deploy", "list"); code != exitFailure || !strings.Contains(errOut, "SYNCBRIDGE_VERSIONING") {
		t.Fatalf("deploy list before any versioned worker: exit %d, %q", code, errOut)
	}
	h.vars["SYNCBRIDGE_BUILD_ID"] = "b1"
	h.worker()
	// The server registers a version with its workers' first polls.
	testwait.Until(t, time.Minute, "b1 registered", func() bool {
		code, _, _ := h.starter("deploy", "current", "b1")
		return code == exitOK
	})
	out := h.mustStarter("deploy", "list")
	if !strings.Contains(out, "current b1") || !hasRow(out, "b1", "current") {
		t.Fatalf("deploy list:\n%s", out)
	}
	if code, _, errOut := h.starter("deploy", "drained", "b1"); code != exitFailure || !strings.Contains(errOut, "current version") {
		t.Fatalf("drained on the current version: exit %d, %q", code, errOut)
	}
	if code, _, errOut := h.starter("deploy", "current", "nope"); code != exitFailure || !strings.Contains(errOut, "not a version") {
		t.Fatalf("current of an unknown build: exit %d, %q", code, errOut)
	}

	h.vars["SYNCBRIDGE_BUILD_ID"] = "b2"
	h.worker()
	testwait.Until(t, time.Minute, "b2 ramping", func() bool {
		code, _, _ := h.starter("deploy", "ramp", "b2", "25")
		return code == exitOK
	})
	if out := h.mustStarter("deploy", "list"); !hasRow(out, "b2", "ramping 25%") || !strings.Contains(out, "ramping b2 at 25%") {
		t.Fatalf("deploy list during the ramp:\n%s", out)
	}
	js := h.starterJSON("deploy", "list")
	if atString(t, js, "deployment") != h.env.TaskQueue || atString(t, js, "current") != "b1" || atString(t, js, "ramping") != "b2" || atFloat(t, js, "rampPercent") != 25 {
		t.Fatalf("deploy list --json during the ramp: %v", js)
	}
	versions := map[string]any{}
	for _, v := range jsonArray(t, at(t, js, "versions")) {
		versions[atString(t, v, "buildId")] = v
	}
	if len(versions) != 2 || atString(t, versions["b1"], "status") != "current" || atString(t, versions["b2"], "status") != "ramping" ||
		atInt(t, versions["b1"], "pollers") < 1 || atInt(t, versions["b2"], "pollers") < 1 ||
		atString(t, versions["b2"], "createdAt") == "" || atInt(t, js, "unversionedPollers") != 0 {
		t.Fatalf("deploy list --json versions: %v", versions)
	}
	if out := h.mustStarter("deploy", "rollback"); !strings.Contains(out, "ramp to b2 stopped") {
		t.Fatalf("rollback during a ramp: %s", out)
	}
	if out := h.mustStarter("deploy", "list"); hasRow(out, "b2", "ramping") || !hasRow(out, "b1", "current") {
		t.Fatalf("deploy list after the ramp's rollback:\n%s", out)
	}

	if out := h.mustStarter("deploy", "current", "b2"); !strings.Contains(out, "current: b2 (was b1)") {
		t.Fatalf("promote: %s", out)
	}
	// Nothing ran on b1, so it drains as soon as the server checks.
	if out := h.mustStarter("deploy", "drained", "b1", "--wait", "1m"); !strings.Contains(out, "b1 drained") {
		t.Fatalf("drained: %s", out)
	}
	if out := h.mustStarter("deploy", "rollback"); !strings.Contains(out, "current: b1 (was b2)") {
		t.Fatalf("rollback to the previous current version: %s", out)
	}
	if out := h.mustStarter("deploy", "list"); !hasRow(out, "b1", "current") || !hasRow(out, "b2", "draining") && !hasRow(out, "b2", "drained") {
		t.Fatalf("deploy list after the rollback:\n%s", out)
	}
}

// hasRow reports whether the table in out has a row for build whose
// status starts with status.
func hasRow(out, build, status string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == build && strings.HasPrefix(strings.Join(f[1:], " "), status) {
			return true
		}
	}
	return false
}
