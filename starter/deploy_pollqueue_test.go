package main

import (
	"context"
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

// A rollback to a build that runs no poll-queue worker (a build from
// before the poll queue): the server refuses to make current a version
// lacking a task queue the current one serves, unless told to ignore it;
// the starter does so for the poll queue alone and says why, and the
// poller, now on that build, polls on the main task queue.
func TestDeployRollbackToBuildWithoutPollQueue(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, map[string]string{
		"SYNCBRIDGE_VERSIONING": "true", "SYNCBRIDGE_POLLERS": "1", "SYNCBRIDGE_START_POLLERS": "false",
	})
	h.vars["SYNCBRIDGE_DEPLOYMENT_NAME"] = h.env.TaskQueue
	h.vars["SYNCBRIDGE_BUILD_ID"] = "old"
	h.workerWith(workerapp.Options{NoPollQueue: true})
	h.vars["SYNCBRIDGE_BUILD_ID"] = "new"
	h.worker()
	testwait.Until(t, time.Minute, "new registered and made current", func() bool {
		code, _, _ := h.starter("deploy", "current", "new")
		return code == exitOK
	})
	cfg := h.config()
	if err := workerapp.EnsurePollers(context.Background(), h.env.Client, cfg, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	pollQueue := contract.PollTaskQueue(h.env.TaskQueue)
	// latestPoll is the task queue of the poller's latest poll once it
	// runs ("" while it waits to start). A running poll's started event
	// is written when it ends: its state comes from the pending activity.
	id := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0)
	latestPoll := func() string {
		d, err := h.env.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		running := false
		for _, a := range d.GetPendingActivities() {
			running = running || a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED
		}
		if !running {
			return ""
		}
		var queue string
		it := h.env.Client.GetWorkflowHistory(context.Background(), id, d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
				queue = a.GetTaskQueue().GetName()
			}
		}
		return queue
	}
	testwait.Until(t, time.Minute, "a poll running on the poll queue", func() bool { return latestPoll() == pollQueue })

	// What the server says without the starter's help (logged only: it
	// refuses only while the poll queue shows recent tasks).
	_, err := h.env.Client.WorkerDeploymentClient().GetHandle(h.env.TaskQueue).SetCurrentVersion(context.Background(),
		client.WorkerDeploymentSetCurrentVersionOptions{BuildID: "old"})
	t.Logf("set current to old without ignoring missing task queues: %v", err)
	if err == nil {
		h.mustStarter("deploy", "current", "new")
	}

	out := h.mustStarter("deploy", "current", "old")
	if !strings.Contains(out, "runs no worker on the poll queue") || !strings.Contains(out, "current: old (was new)") {
		t.Fatalf("deploy current old:\n%s", out)
	}
	testwait.Until(t, 2*time.Minute, "a poll running on the main task queue", func() bool { return latestPoll() == h.env.TaskQueue })
}
