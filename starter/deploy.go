package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	deploymentpb "go.temporal.io/api/deployment/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// UnversionedBuild names "no version" in current and ramp: routing back to
// workers running with SYNCBRIDGE_VERSIONING=false.
const unversionedBuild = "unversioned"

// deployWaitEvery is how often drained --wait asks again.
var deployWaitEvery = 2 * time.Second

func deployCommand() *command {
	return &command{
		name:    "deploy",
		summary: "worker deployment versions: list, make current, ramp, roll back, tell when drained",
		about: `Worker Deployment Versioning (SYNCBRIDGE_VERSIONING=true): every build of
the worker is a version of the deployment SYNCBRIDGE_DEPLOYMENT_NAME, named
by its build ID (SYNCBRIDGE_BUILD_ID, default the binary's VCS revision).
New record workflows start on the current version (or, for a ramp's share,
on the ramping one) and every task of a record runs on the build that
started it; pollers and reconciliation move to the current version at
their next task. A build whose records have all closed is drained: its
workers can stop. See docs/deploying.md.`,
		actions: []*command{
			{
				name: "list", summary: "the deployment's versions: routing, drainage, pollers, running records",
				synopsis: "deploy list [--json]",
				about: `
Lists the versions of the deployment SYNCBRIDGE_DEPLOYMENT_NAME, oldest
first: routing state (current, ramping N%, draining, drained), the workers
polling SYNCBRIDGE_TASK_QUEUE with that build, and the running executions on
it (PINNED ones keep it from draining; the server's own drainage status is
refreshed every few minutes, these counts are live).`,
				needs: needTemporal, listing: true,
				run: deployList,
			},
			{
				name: "current", summary: "make a build the current version (all new work)",
				synopsis: "deploy current BUILD [--allow-no-pollers]",
				about: `
Makes BUILD the current version: every new record workflow starts on it,
and the pollers and reconciliation move to it at their next task. Records
already running stay on the build that started them. A ramp to BUILD ends.
'unversioned' routes new work back to workers running without versioning.
The server refuses a build no worker has polled with (start its workers
first) unless --allow-no-pollers.`,
				needs: needTemporal, args: exactly(1, "BUILD"),
				setup: func(fs *flags) runFunc {
					allowNoPollers := fs.Bool("allow-no-pollers", false, "accept a build no worker has polled with yet")
					return func(ctx context.Context, e *env, args []string) error {
						d, err := describeDeployment(ctx, e)
						if err != nil {
							return err
						}
						return setCurrent(ctx, e, d, buildArg(args[0]), *allowNoPollers)
					}
				},
			},
			{
				name: "ramp", summary: "send a percentage of new work to a build, or stop a ramp",
				synopsis: "deploy ramp BUILD PERCENT | deploy ramp --stop",
				about: `
Sends PERCENT (0-100, fractions allowed) of new record workflows, and of the
pollers' and reconciliation's tasks, to BUILD; the rest go to the current
version. Each record stays on the build it started on. Raise the
percentage step by step while watching the build (docs/deploying.md,
"Every deploy after that"), then make it current. --stop ends the ramp: everything new goes to
the current version again.`,
				needs: needTemporal, args: atMost(2, "BUILD and PERCENT"),
				setup: func(fs *flags) runFunc {
					stop := fs.Bool("stop", false, "end the ramp")
					allowNoPollers := fs.Bool("allow-no-pollers", false, "accept a build no worker has polled with yet")
					var pct float64
					fs.check(func(args []string) error {
						switch {
						case *stop && len(args) == 0:
							return nil
						case *stop:
							return usagef("--stop takes no arguments")
						case len(args) != 2:
							return usagef("want BUILD and PERCENT, or --stop")
						}
						var err error
						if pct, err = strconv.ParseFloat(args[1], 32); err != nil || pct < 0 || pct > 100 {
							return usagef("PERCENT must be a number from 0 to 100, got %q", args[1])
						}
						return nil
					})
					return func(ctx context.Context, e *env, args []string) error {
						d, err := describeDeployment(ctx, e)
						if err != nil {
							return err
						}
						if *stop {
							return stopRamp(ctx, e, d)
						}
						return ramp(ctx, e, d, buildArg(args[0]), pct, *allowNoPollers)
					}
				},
			},
			{
				name: "rollback", summary: "stop a ramp, or make the previous (or a named) build current again",
				synopsis: "deploy rollback [BUILD]",
				about: `
Undoes the last routing step. During a ramp, ends it (as 'deploy ramp
--stop'). Otherwise makes BUILD current again, by default the version that
was current most recently before the present one; its workers must be
running (start them again first if they were retired). Records started on
the build rolled back from stay on it and finish there: keep its workers
until 'starter deploy drained BUILD' exits 0.`,
				needs: needTemporal, args: atMost(1, "BUILD"),
				run: deployRollback,
			},
			{
				name: "drained", summary: "exit 0 when no record is left pinned to a build: its workers can stop",
				synopsis: "deploy drained BUILD [--wait D]",
				about: `
Exits 0 when BUILD is drained: it is neither current nor ramping, the
server reports it drained, and no execution pinned to it is running, so its
workers can be stopped. Exits 1 otherwise, saying what it waits on. The
server checks drainage a few minutes after the version stopped taking new
work (a grace period for visibility), then every few minutes. --wait keeps
asking until drained or D has passed.`,
				needs: needTemporal, args: exactly(1, "BUILD"),
				setup: func(fs *flags) runFunc {
					wait := fs.Duration("wait", 0, "keep asking for up to this long")
					return func(ctx context.Context, e *env, args []string) error { return deployDrained(ctx, e, args[0], *wait) }
				},
			},
		},
	}
}

// busyRetryFor bounds how long a command retries a deployment the server
// says is busy.
var busyRetryFor = 30 * time.Second

// retryBusy runs call until it succeeds, fails otherwise, or busyRetryFor
// has passed. The server answers "too many requests issued to Worker
// Deployment" (ResourceExhausted) while the deployment's own workflow is
// still applying the previous change, e.g. a describe right after a ramp:
// a moment later the same call succeeds.
func retryBusy(ctx context.Context, call func() error) error {
	deadline := time.Now().Add(busyRetryFor)
	wait := 250 * time.Millisecond
	for {
		err := call()
		var busy *serviceerror.ResourceExhausted
		if err == nil || !errors.As(err, &busy) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 4*time.Second)
	}
}

// deployment is what the commands read about the deployment.
type deployment struct {
	name     string
	info     *deploymentpb.WorkerDeploymentInfo
	versions []*deploymentpb.WorkerDeploymentInfo_WorkerDeploymentVersionSummary
}

func (d deployment) current() string {
	return d.info.GetRoutingConfig().GetCurrentDeploymentVersion().GetBuildId()
}
func (d deployment) ramping() string {
	return d.info.GetRoutingConfig().GetRampingDeploymentVersion().GetBuildId()
}
func (d deployment) rampPercent() float32 {
	return d.info.GetRoutingConfig().GetRampingVersionPercentage()
}

func (d deployment) version(build string) *deploymentpb.WorkerDeploymentInfo_WorkerDeploymentVersionSummary {
	for _, v := range d.versions {
		if v.GetDeploymentVersion().GetBuildId() == build {
			return v
		}
	}
	return nil
}

// describeDeployment reads the deployment through the raw API: its version
// summaries say when each version was last current, which rollback needs
// and the SDK's summary leaves out.
func describeDeployment(ctx context.Context, e *env) (deployment, error) {
	name := e.cfg.Versioning.DeploymentName
	var resp *workflowservice.DescribeWorkerDeploymentResponse
	err := retryBusy(ctx, func() error {
		var err error
		resp, err = e.tc.WorkflowService().DescribeWorkerDeployment(ctx, &workflowservice.DescribeWorkerDeploymentRequest{
			Namespace: e.cfg.Temporal.Namespace, DeploymentName: name,
		})
		return err
	})
	if err != nil {
		return deployment{}, fmt.Errorf("describe deployment %s (do workers run with SYNCBRIDGE_VERSIONING=true?): %w", name, err)
	}
	d := deployment{name: name, info: resp.GetWorkerDeploymentInfo()}
	d.versions = append(d.versions, d.info.GetVersionSummaries()...)
	sort.Slice(d.versions, func(i, j int) bool {
		return d.versions[i].GetCreateTime().AsTime().Before(d.versions[j].GetCreateTime().AsTime())
	})
	return d, nil
}

// versionStatus is the version's routing state in a word.
func versionStatus(d deployment, v *deploymentpb.WorkerDeploymentInfo_WorkerDeploymentVersionSummary) string {
	b := v.GetDeploymentVersion().GetBuildId()
	switch {
	case b == d.current():
		return "current"
	case b == d.ramping():
		return "ramping"
	}
	switch v.GetStatus() {
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING:
		return "draining"
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED:
		return "drained"
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED:
		return "inactive"
	}
	return snake(v.GetStatus().String())
}

// runningRecords counts running executions on a version: those pinned to
// it (what keeps it from draining) and all, auto-upgrade ones included.
// The same visibility query the server's drainage check runs, asked now
// rather than at its next refresh.
func runningOn(ctx context.Context, tc client.Client, deploymentName, build string) (pinned, all int64, err error) {
	q := fmt.Sprintf("TemporalWorkerDeploymentVersion = '%s' AND ExecutionStatus = 'Running'", escapeQuery(deploymentName+":"+build))
	r, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return 0, 0, fmt.Errorf("count running executions of %s: %w", build, err)
	}
	p, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q + " AND TemporalWorkflowVersioningBehavior = 'Pinned'"})
	if err != nil {
		return 0, 0, fmt.Errorf("count pinned executions of %s: %w", build, err)
	}
	return p.GetCount(), r.GetCount(), nil
}

// deploymentView is `deploy list`, as --json prints it.
type deploymentView struct {
	Deployment string `json:"deployment"`
	Current    string `json:"current"` // a build ID, or "unversioned"
	// Ramping is the build taking RampPercent of new work; empty without
	// a ramp ("unversioned" when the ramp is to unversioned workers).
	Ramping     string        `json:"ramping,omitempty"`
	RampPercent float32       `json:"rampPercent"`
	Versions    []versionView `json:"versions"` // oldest first
	// UnversionedPollers counts workers polling without versioning.
	UnversionedPollers int `json:"unversionedPollers"`
	taskQueue          string
}

type versionView struct {
	BuildID string `json:"buildId"`
	// Status is current, ramping, draining, drained or inactive (never
	// current nor ramping).
	Status        string    `json:"status"`
	Pollers       int       `json:"pollers"`       // workers polling with this build
	PinnedRunning int64     `json:"pinnedRunning"` // running executions pinned to it: it drains when 0
	Running       int64     `json:"running"`       // all running executions on it
	CreatedAt     time.Time `json:"createdAt"`
	LastCurrentAt time.Time `json:"lastCurrentAt,omitzero"`
}

func deployList(ctx context.Context, e *env, _ []string) error {
	d, err := describeDeployment(ctx, e)
	if err != nil {
		return err
	}
	polls, err := taskQueuePollers(ctx, e.tc, e.cfg.Temporal.TaskQueue)
	if err != nil {
		return err
	}
	perBuild := map[string]int{}
	for _, p := range polls {
		perBuild[p.BuildID]++
	}
	v := deploymentView{
		Deployment: d.name, Current: orUnversioned(d.current()), RampPercent: d.rampPercent(),
		Versions: make([]versionView, 0, len(d.versions)), UnversionedPollers: perBuild[""], taskQueue: e.cfg.Temporal.TaskQueue,
	}
	if d.ramping() != "" || d.rampPercent() > 0 {
		v.Ramping = orUnversioned(d.ramping())
	}
	for _, ver := range d.versions {
		b := ver.GetDeploymentVersion().GetBuildId()
		vv := versionView{BuildID: b, Status: versionStatus(d, ver), Pollers: perBuild[b], CreatedAt: ver.GetCreateTime().AsTime().UTC()}
		if vv.PinnedRunning, vv.Running, err = runningOn(ctx, e.tc, d.name, b); err != nil {
			return err
		}
		if t := ver.GetLastCurrentTime(); t != nil && !t.AsTime().IsZero() {
			vv.LastCurrentAt = t.AsTime().UTC()
		}
		v.Versions = append(v.Versions, vv)
	}
	return e.output(v, func() { v.print(e) })
}

func (v deploymentView) print(e *env) {
	e.printf("deployment %s: current %s", v.Deployment, v.Current)
	if v.Ramping != "" {
		e.printf(", ramping %s at %g%%", v.Ramping, v.RampPercent)
	}
	e.printf("\n")
	e.table(func(tw io.Writer) {
		fmt.Fprintf(tw, "BUILD\tSTATUS\tPOLLERS\tPINNED RUNNING\tRUNNING\tCREATED\tLAST CURRENT\n")
		for _, ver := range v.Versions {
			status := ver.Status
			switch status {
			case "ramping":
				status = fmt.Sprintf("ramping %g%%", v.RampPercent)
			case "inactive":
				status = "inactive (never current)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", ver.BuildID, status, ver.Pollers, ver.PinnedRunning, ver.Running, fmtTime(ver.CreatedAt), fmtTime(ver.LastCurrentAt))
		}
	})
	if v.UnversionedPollers > 0 {
		e.printf("unversioned workers polling %s: %d (SYNCBRIDGE_VERSIONING=false)\n", v.taskQueue, v.UnversionedPollers)
	}
}

func orUnversioned(build string) string {
	if build == "" {
		return unversionedBuild
	}
	return build
}

// buildArg maps the operator's word for unversioned workers to the API's.
func buildArg(s string) string {
	if s == unversionedBuild {
		return ""
	}
	return s
}

func setCurrent(ctx context.Context, e *env, d deployment, build string, allowNoPollers bool) error {
	if build != "" && d.version(build) == nil {
		return fmt.Errorf("build %q is not a version of deployment %s (start its workers with SYNCBRIDGE_VERSIONING=true and SYNCBRIDGE_BUILD_ID=%s first; 'starter deploy list' shows the versions)", build, d.name, build)
	}
	ignore, err := onlyPollQueueMissing(ctx, e, d, build)
	if err != nil {
		return err
	}
	err = retryBusy(ctx, func() error {
		_, err := e.tc.WorkerDeploymentClient().GetHandle(d.name).SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{
			BuildID:                 build,
			AllowNoPollers:          allowNoPollers,
			IgnoreMissingTaskQueues: ignore,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("set current version of %s to %s: %w", d.name, orUnversioned(build), err)
	}
	e.printf("current: %s (was %s)\n", orUnversioned(build), orUnversioned(d.current()))
	if prev := d.current(); prev != "" && prev != build {
		e.printf("records started on %s finish there: keep its workers until 'starter deploy drained %s' exits 0\n", prev, prev)
	}
	return nil
}

func ramp(ctx context.Context, e *env, d deployment, build string, pct float64, allowNoPollers bool) error {
	if build == d.current() {
		return fmt.Errorf("%s is already the current version", orUnversioned(build))
	}
	if build != "" && d.version(build) == nil {
		return fmt.Errorf("build %q is not a version of deployment %s ('starter deploy list' shows the versions)", build, d.name)
	}
	ignore, err := onlyPollQueueMissing(ctx, e, d, build)
	if err != nil {
		return err
	}
	err = retryBusy(ctx, func() error {
		_, err := e.tc.WorkerDeploymentClient().GetHandle(d.name).SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{
			BuildID: build, Percentage: float32(pct), AllowNoPollers: allowNoPollers, IgnoreMissingTaskQueues: ignore,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("ramp %s to %g%%: %w", orUnversioned(build), pct, err)
	}
	e.printf("ramping: %s at %g%% (current %s)\n", orUnversioned(build), pct, orUnversioned(d.current()))
	return nil
}

// onlyPollQueueMissing tells whether the current version's workers poll
// the poll queue (contract.PollTaskQueue) and build's do not, with no other
// task queue missing: build is from before the poll queue. The server
// refuses to route to a version that lacks a task queue the current one
// serves (it would strand that queue's tasks) unless told to ignore it; for
// the poll queue that is safe: such a build's pollers poll on the main task
// queue, and a poll left waiting on the poll queue times out after
// workflows.PollQueueWait (its poller fails and the workers' keeper starts
// it again, or, on a build that has the poll queue's code, it moves to the
// main task queue). Any other missing queue is left to the server's
// refusal.
func onlyPollQueueMissing(ctx context.Context, e *env, d deployment, build string) (bool, error) {
	cur := d.current()
	if cur == "" || build == "" || build == cur {
		return false, nil
	}
	h := e.tc.WorkerDeploymentClient().GetHandle(d.name)
	queues := func(b string) (map[string]bool, error) {
		v, err := h.DescribeVersion(ctx, client.WorkerDeploymentDescribeVersionOptions{BuildID: b})
		if err != nil {
			return nil, fmt.Errorf("describe version %s: %w", b, err)
		}
		m := map[string]bool{}
		for _, q := range v.Info.TaskQueuesInfos {
			m[q.Name] = true
		}
		return m, nil
	}
	had, err := queues(cur)
	if err != nil {
		return false, err
	}
	has, err := queues(build)
	if err != nil {
		return false, err
	}
	pollQueue := contract.PollTaskQueue(e.cfg.Temporal.TaskQueue)
	missing := false
	for q := range had {
		if has[q] {
			continue
		}
		if q != pollQueue {
			return false, nil
		}
		missing = true
	}
	if missing {
		e.printf("%s runs no worker on the poll queue %s (a build from before it): the pollers poll on %s there\n", build, pollQueue, e.cfg.Temporal.TaskQueue)
	}
	return missing, nil
}

func stopRamp(ctx context.Context, e *env, d deployment) error {
	if d.ramping() == "" && d.rampPercent() == 0 {
		e.printf("no ramp in progress (current %s)\n", orUnversioned(d.current()))
		return nil
	}
	err := retryBusy(ctx, func() error {
		_, err := e.tc.WorkerDeploymentClient().GetHandle(d.name).SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("stop the ramp to %s: %w", orUnversioned(d.ramping()), err)
	}
	e.printf("ramp to %s stopped: all new work goes to %s\n", orUnversioned(d.ramping()), orUnversioned(d.current()))
	if d.ramping() != "" {
		e.printf("records started on %s finish there: keep its workers until 'starter deploy drained %s' exits 0\n", d.ramping(), d.ramping())
	}
	return nil
}

func deployRollback(ctx context.Context, e *env, pos []string) error {
	d, err := describeDeployment(ctx, e)
	if err != nil {
		return err
	}
	if len(pos) == 0 && (d.ramping() != "" || d.rampPercent() > 0) {
		return stopRamp(ctx, e, d)
	}
	target := ""
	if len(pos) == 1 {
		target = buildArg(pos[0])
	} else {
		var last time.Time
		for _, v := range d.versions {
			b := v.GetDeploymentVersion().GetBuildId()
			if t := v.GetLastCurrentTime(); b != d.current() && t != nil && t.AsTime().After(last) {
				target, last = b, t.AsTime()
			}
		}
		if target == "" {
			return fmt.Errorf("no earlier current version of %s to roll back to; name one: 'starter deploy rollback BUILD' ('unversioned' for workers without versioning)", d.name)
		}
	}
	if target == d.current() {
		return fmt.Errorf("%s is already the current version", orUnversioned(target))
	}
	return setCurrent(ctx, e, d, target, false)
}

func deployDrained(ctx context.Context, e *env, build string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		d, err := describeDeployment(ctx, e)
		if err != nil {
			return err
		}
		why, err := notDrained(ctx, e.tc, d, build)
		if err != nil {
			return err
		}
		if why == "" {
			e.printf("%s drained: no execution is pinned to it; its workers can stop\n", build)
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s not drained: %s", build, why)
		}
		e.progress("%s: %s", build, why)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not drained: %s", build, why)
		case <-time.After(deployWaitEvery):
		}
	}
}

// notDrained says why build's workers may not stop yet, "" when they may.
func notDrained(ctx context.Context, tc client.Client, d deployment, build string) (string, error) {
	v := d.version(build)
	switch {
	case v == nil:
		return "", fmt.Errorf("build %q is not a version of deployment %s", build, d.name)
	case build == d.current():
		return "it is the current version", nil
	case build == d.ramping():
		return fmt.Sprintf("it is ramping at %g%%", d.rampPercent()), nil
	}
	pinned, _, err := runningOn(ctx, tc, d.name, build)
	if err != nil {
		return "", err
	}
	if pinned > 0 {
		return fmt.Sprintf("%d executions pinned to it are running", pinned), nil
	}
	switch v.GetStatus() {
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED:
		return "", nil
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED:
		// Never current nor ramping: nothing was ever routed to it.
		return "", nil
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING:
		return "the server has not confirmed drainage yet (it checks a few minutes after the version stopped taking new work)", nil
	}
	return "status " + snake(v.GetStatus().String()), nil
}
