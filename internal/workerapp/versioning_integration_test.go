package workerapp

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
	"github.com/syncbridge/syncbridge/internal/testwait"
	"github.com/syncbridge/syncbridge/workflows"
)

// incompatibleRecord is the record workflow of a build whose shape no
// longer matches RecordWorkflowV2's histories: its first command is a side
// effect marker where RecordWorkflowV2 records a local activity marker, so
// either build replaying the other's history fails with a non-determinism
// error. The upgrade test proves that first, so its "no non-determinism
// error anywhere" is a result of routing, not of compatible code.
func incompatibleRecord(ctx workflow.Context, in contract.RecordInput) (contract.RecordResult, error) {
	var shape string
	if err := workflow.SideEffect(ctx, func(workflow.Context) any { return "v2" }).Get(&shape); err != nil {
		return contract.RecordResult{}, err
	}
	return workflows.RecordWorkflowV2(ctx, in)
}

// versioned is the upgrade test's pipeline: workers of two builds of one
// Worker Deployment, each build with its own cuttable path to the
// database.
type versioned struct {
	*pipe
	deployment string
	all        []syncevent.OutMessage
	ids        []string
	seed       int64
}

// A rolling upgrade and a rollback in the middle of a drain, as the
// runbook in docs/deploying.md does them. Build 1 drains a backlog; with its database cut, a
// batch of records started on it is left running. Build 2, whose record
// workflow is incompatible with build 1's histories, is made current: new
// records start on it while build 1's stuck records, after build 1's
// worker is replaced by a fresh one (no sticky cache to hide routing),
// finish on build 1. The rollback mirrors it with build 2's records stuck.
// Build 1 then reports drained and its last worker stops; build 2 drains
// what is left alone. Every workflow task of every record ran on the build
// that started it, no task failed anywhere, and the database and broker
// show nothing lost or doubled.
func TestUpgradeAndRollbackMidDrain(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, map[string]string{
		"SYNCBRIDGE_VERSIONING": "true",
		"SYNCBRIDGE_POLLERS":    "1",
		// Pollers are started once build 1 is current (below), so the
		// test does not lean on the server moving unversioned tasks.
		"SYNCBRIDGE_START_POLLERS": "false",
	})
	v := &versioned{pipe: p, deployment: p.env.TaskQueue}
	p.vars["SYNCBRIDGE_DEPLOYMENT_NAME"] = v.deployment
	proxy1, dsn1 := v.dbPath()
	proxy2, dsn2 := v.dbPath()
	ctx := context.Background()

	// Build 1 alone drains a backlog.
	w1 := v.worker("build-1", dsn1, Options{})
	v.setCurrent("build-1")
	if err := EnsurePollers(ctx, p.env.Client, p.config(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	a0 := v.publish("a0-", 20)
	p.waitDrained(len(v.all), 3*time.Minute)

	// Build 1 loses its database: its next records stay running, pinned.
	proxy1.Cut()
	a1 := v.publish("a1-", 20)
	v.waitPinnedRunning("build-1", 20)

	// Build 2 becomes current mid-drain.
	w2 := v.worker("build-2", dsn2, Options{RecordWorkflow: incompatibleRecord})
	v.proveIncompatible(a1[0].Key)
	v.setCurrent("build-2")
	if why := v.notDrained("build-1"); !strings.Contains(why, "pinned") {
		t.Fatalf("build 1 with records running on it: %q, want pinned executions named", why)
	}
	b := v.publish("b-", 20)
	// Replace build 1's worker while its records are stuck: their next
	// tasks leave the old worker's sticky queue for the task queue, where
	// only routing keeps build 2 from taking them.
	if err := w1.stop(); err != nil {
		t.Fatalf("build 1 worker stop: %v", err)
	}
	proxy1.Restore()
	w1 = v.worker("build-1", dsn1, Options{})
	p.waitDrained(len(v.all), 4*time.Minute)
	v.checkBuild(append(a0, a1...), "build-1")
	v.checkBuild(b, "build-2")
	v.waitDrained("build-1")

	// Rollback, the same way round: build 2's records stuck, build 1
	// current again (the previous current version), build 2 drains.
	proxy2.Cut()
	c := v.publish("c-", 20)
	v.waitPinnedRunning("build-2", 20)
	v.setCurrent("build-1")
	d := v.publish("d-", 20)
	proxy2.Restore()
	p.waitDrained(len(v.all), 4*time.Minute)
	v.checkBuild(c, "build-2")
	v.checkBuild(d, "build-1")
	v.waitDrained("build-2")

	// Forward again; build 1 drains and its last worker stops; build 2
	// alone takes what comes after.
	v.setCurrent("build-2")
	e := v.publish("e-", 20)
	p.waitDrained(len(v.all), 3*time.Minute)
	v.waitDrained("build-1")
	if err := w1.stop(); err != nil {
		t.Fatalf("build 1 worker stop: %v", err)
	}
	f := v.publish("f-", 10)
	p.waitDrained(len(v.all), 3*time.Minute)
	v.checkBuild(append(e, f...), "build-2")
	v.checkPollers()
	p.verify(expect(t, v.all, v.ids))
	if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Acked != st.Published {
		t.Fatalf("broker: %+v, want every message acked", st)
	}
	if err := w2.stop(); err != nil {
		t.Fatalf("build 2 worker stop: %v", err)
	}
}

// dbPath is a cuttable path to the test database for one build's workers,
// with driver timeouts short enough that a cut shows within seconds.
func (v *versioned) dbPath() (*tcpproxy.Proxy, string) {
	v.t.Helper()
	return proxiedDSN(v.t, v.env.DSN)
}

// worker runs a worker of build through the production Run.
func (v *versioned) worker(build, dsn string, o Options) *running {
	v.t.Helper()
	saved := maps.Clone(v.vars)
	defer func() { v.vars = saved }()
	v.vars["SYNCBRIDGE_BUILD_ID"] = build
	v.vars["POLARDB_DSN"] = dsn
	return v.pipe.worker(o)
}

func (v *versioned) handle() client.WorkerDeploymentHandle {
	return v.env.Client.WorkerDeploymentClient().GetHandle(v.deployment)
}

// setCurrent makes build current, as `starter deploy current` does, once
// the server has registered it (its workers' first polls do that).
func (v *versioned) setCurrent(build string) {
	v.t.Helper()
	var err error
	testwait.Until(v.t, time.Minute, "build "+build+" registered and made current", func() bool {
		_, err = v.handle().SetCurrentVersion(context.Background(), client.WorkerDeploymentSetCurrentVersionOptions{BuildID: build})
		return err == nil
	})
	// The new routing reaches every partition of the task queue within
	// moments; records published from here on must start on build.
	time.Sleep(2 * time.Second)
	v.t.Logf("current version: %s", build)
}

func (v *versioned) publish(prefix string, n int) []syncevent.OutMessage {
	v.t.Helper()
	v.seed++
	msgs := generate(syncevent.GenOptions{Count: n, Seed: v.seed, KeyPrefix: prefix})
	ids := v.pipe.publish(msgs)
	v.all = append(v.all, msgs...)
	v.ids = append(v.ids, ids...)
	return msgs
}

// pinnedRunning counts this test's running records pinned to build: what
// the server's drainage check counts.
func (v *versioned) pinnedRunning(build string) int64 {
	v.t.Helper()
	return v.count(fmt.Sprintf("ExecutionStatus = 'Running' AND TemporalWorkerDeploymentVersion = '%s:%s' AND TemporalWorkflowVersioningBehavior = 'Pinned'", v.deployment, build))
}

func (v *versioned) waitPinnedRunning(build string, n int64) {
	v.t.Helper()
	testwait.Until(v.t, 2*time.Minute, fmt.Sprintf("%d records running pinned to %s", n, build), func() bool {
		return v.pinnedRunning(build) >= n
	})
}

// notDrained says why build's workers may not stop yet ("" when they
// may): the checks of `starter deploy drained`.
func (v *versioned) notDrained(build string) string {
	v.t.Helper()
	desc, err := v.handle().DescribeVersion(context.Background(), client.WorkerDeploymentDescribeVersionOptions{BuildID: build})
	if err != nil {
		v.t.Fatalf("describe version %s: %v", build, err)
	}
	if n := v.pinnedRunning(build); n > 0 {
		return fmt.Sprintf("%d executions pinned to it are running", n)
	}
	if di := desc.Info.DrainageInfo; di == nil || di.DrainageStatus != client.WorkerDeploymentVersionDrainageStatusDrained {
		return fmt.Sprintf("server drainage status %+v", di)
	}
	return ""
}

func (v *versioned) waitDrained(build string) {
	v.t.Helper()
	testwait.Until(v.t, time.Minute, build+" drained", func() bool { return v.notDrained(build) == "" })
	v.t.Logf("%s drained", build)
}

func (v *versioned) history(workflowID string) *historypb.History {
	v.t.Helper()
	it := v.env.Client.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			v.t.Fatalf("history of %s: %v", workflowID, err)
		}
		h.Events = append(h.Events, ev)
	}
	return &h
}

// taskBuild is the build ID a completed workflow task ran on.
func taskBuild(a *historypb.WorkflowTaskCompletedEventAttributes) string {
	if b := a.GetDeploymentVersion().GetBuildId(); b != "" {
		return b
	}
	_, b, _ := strings.Cut(a.GetWorkerDeploymentVersion(), ":")
	return b
}

// checkBuild checks that every workflow task of every run of the records
// of msgs ran on build and none failed.
func (v *versioned) checkBuild(msgs []syncevent.OutMessage, build string) {
	v.t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	for _, m := range msgs {
		id := contract.RecordWorkflowID(v.prefix, m.Key)
		if seen[id] {
			continue
		}
		seen[id] = true
		resp, err := v.env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s'", id),
		})
		if err != nil {
			v.t.Fatal(err)
		}
		if len(resp.GetExecutions()) == 0 {
			v.t.Fatalf("record %s has no run", id)
		}
		for _, x := range resp.GetExecutions() {
			v.checkRun(id, x.GetExecution().GetRunId(), build)
		}
	}
}

func (v *versioned) checkRun(workflowID, runID, build string) {
	v.t.Helper()
	it := v.env.Client.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	tasks := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			v.t.Fatal(err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
			v.t.Fatalf("%s/%s: workflow task failed (%s): %s", workflowID, runID,
				ev.GetWorkflowTaskFailedEventAttributes().GetCause(), ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage())
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			tasks++
			a := ev.GetWorkflowTaskCompletedEventAttributes()
			if got := taskBuild(a); got != build {
				v.t.Fatalf("%s/%s: workflow task %d ran on build %q (%s), want %s", workflowID, runID, ev.GetEventId(), got, a.GetIdentity(), build)
			}
		}
	}
	if tasks == 0 {
		v.t.Fatalf("%s/%s: no completed workflow task", workflowID, runID)
	}
}

// checkPollers checks the poller, which moved between builds with the
// current version, never failed a workflow task.
func (v *versioned) checkPollers() {
	v.t.Helper()
	cfg := v.config()
	id := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0)
	builds := map[string]int{}
	// Polls scheduled on the poll queue, by scheduled event ID; true once
	// started. The poll-queue workers join their build's version like the
	// main ones, so the polls start there: were they not dispatched, each
	// would wait out its ScheduleToStart and move to the main queue.
	pollQueue := map[int64]bool{}
	var unstarted int
	for _, ev := range v.history(id).GetEvents() {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
			v.t.Fatalf("poller %s: workflow task failed: %s", id, ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage())
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			builds[taskBuild(ev.GetWorkflowTaskCompletedEventAttributes())]++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if ev.GetActivityTaskScheduledEventAttributes().GetTaskQueue().GetName() == contract.PollTaskQueue(v.env.TaskQueue) {
				pollQueue[ev.GetEventId()] = false
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if sid := ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId(); len(pollQueue) > 0 {
				if _, ok := pollQueue[sid]; ok {
					pollQueue[sid] = true
				}
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			if ev.GetActivityTaskTimedOutEventAttributes().GetFailure().GetTimeoutFailureInfo().GetTimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
				unstarted++
			}
		}
	}
	started := 0
	for _, ok := range pollQueue {
		if ok {
			started++
		}
	}
	v.t.Logf("poller workflow tasks by build: %v; polls on the poll queue: %d scheduled, %d started, %d never started", builds, len(pollQueue), started, unstarted)
	if started == 0 {
		v.t.Fatalf("poller %s: no poll started on the poll queue in its latest run", id)
	}
}

// proveIncompatible replays a build 1 record's history with build 2's
// record workflow, which must fail: otherwise the test below proves
// nothing about routing.
func (v *versioned) proveIncompatible(key string) {
	v.t.Helper()
	id := contract.RecordWorkflowID(v.prefix, key)
	var o worker.WorkflowReplayerOptions
	if v.env.Codec != nil {
		o.DataConverter = v.env.Codec.DataConverter()
		o.FailureConverter = v.env.Codec.FailureConverter()
	}
	r, err := worker.NewWorkflowReplayerWithOptions(o)
	if err != nil {
		v.t.Fatal(err)
	}
	workflows.RegisterWithRecord(r, incompatibleRecord)
	err = r.ReplayWorkflowHistory(nil, v.history(id))
	// TMPRL1100 is the SDK's code for every non-determinism error.
	if err == nil || !strings.Contains(err.Error(), "TMPRL1100") && !strings.Contains(strings.ToLower(err.Error()), "nondetermin") {
		v.t.Fatalf("build 2's record workflow replayed build 1's history of %s: %v; want a non-determinism error", id, err)
	}
}
