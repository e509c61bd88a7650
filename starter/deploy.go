package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	deploymentpb "go.temporal.io/api/deployment/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
)

const deployAbout = `Worker Deployment Versioning (SYNCBRIDGE_VERSIONING=true): every build of
the worker is a version of the deployment SYNCBRIDGE_DEPLOYMENT_NAME, named
by its build ID (SYNCBRIDGE_BUILD_ID, default the binary's VCS revision).
New record workflows start on the current version (or, for a ramp's share,
on the ramping one) and every task of a record runs on the build that
started it; pollers and reconciliation move to the current version at
their next task. A build whose records have all closed is drained: its
workers can stop. See README, "Deploying a new build".`

// UnversionedBuild names "no version" in current and ramp: routing back to
// workers running with SYNCBRIDGE_VERSIONING=false.
const unversionedBuild = "unversioned"

// deployWaitEvery is how often drained --wait asks again.
var deployWaitEvery = 2 * time.Second

func runDeploy(ctx context.Context, e *env, args []string) int {
	return dispatch(ctx, e, "deploy", deployAbout, []action{
		{"list", "the deployment's versions: routing, drainage, pollers, running records", deployList},
		{"current", "make a build the current version (all new work)", deployCurrent},
		{"ramp", "send a percentage of new work to a build, or stop a ramp", deployRamp},
		{"rollback", "stop a ramp, or make the previous (or a named) build current again", deployRollback},
		{"drained", "exit 0 when no record is left pinned to a build: its workers can stop", deployDrained},
	}, args)
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
func describeDeployment(ctx context.Context, e *env) (deployment, config.Config, client.Client, error) {
	cfg, err := e.config()
	if err != nil {
		return deployment{}, cfg, nil, err
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return deployment{}, cfg, nil, err
	}
	var resp *workflowservice.DescribeWorkerDeploymentResponse
	err = retryBusy(ctx, func() error {
		var err error
		resp, err = tc.WorkflowService().DescribeWorkerDeployment(ctx, &workflowservice.DescribeWorkerDeploymentRequest{
			Namespace: cfg.Temporal.Namespace, DeploymentName: cfg.Versioning.DeploymentName,
		})
		return err
	})
	if err != nil {
		return deployment{}, cfg, tc, fmt.Errorf("describe deployment %s (do workers run with SYNCBRIDGE_VERSIONING=true?): %w", cfg.Versioning.DeploymentName, err)
	}
	d := deployment{name: cfg.Versioning.DeploymentName, info: resp.GetWorkerDeploymentInfo()}
	d.versions = append(d.versions, d.info.GetVersionSummaries()...)
	sort.Slice(d.versions, func(i, j int) bool {
		return d.versions[i].GetCreateTime().AsTime().Before(d.versions[j].GetCreateTime().AsTime())
	})
	return d, cfg, tc, nil
}

// versionStatus is the version's routing state in a word.
func versionStatus(d deployment, v *deploymentpb.WorkerDeploymentInfo_WorkerDeploymentVersionSummary) string {
	b := v.GetDeploymentVersion().GetBuildId()
	switch {
	case b == d.current():
		return "current"
	case b == d.ramping():
		return fmt.Sprintf("ramping %g%%", d.rampPercent())
	}
	switch v.GetStatus() {
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING:
		return "draining"
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED:
		return "drained"
	case enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, enumspb.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED:
		return "inactive (never current)"
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

// pollersByBuild is, per build ID ("" = unversioned), the identities of
// workers that polled the task queue recently.
func pollersByBuild(ctx context.Context, tc client.Client, queue string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
		d, err := tc.DescribeTaskQueue(ctx, queue, typ)
		if err != nil {
			return nil, fmt.Errorf("describe task queue %s: %w", queue, err)
		}
		for _, p := range d.GetPollers() {
			b := p.GetDeploymentOptions().GetBuildId()
			if out[b] == nil {
				out[b] = map[string]bool{}
			}
			out[b][p.GetIdentity()] = true
		}
	}
	return out, nil
}

func deployList(ctx context.Context, e *env, args []string) int {
	fs := newFlags("deploy list", "deploy list", `
Lists the versions of the deployment SYNCBRIDGE_DEPLOYMENT_NAME, oldest
first: routing state (current, ramping N%, draining, drained), the workers
polling SYNCBRIDGE_TASK_QUEUE with that build, and the running executions on
it (PINNED ones keep it from draining; the server's own drainage status is
refreshed every few minutes, these counts are live).`)
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	d, cfg, tc, err := describeDeployment(ctx, e)
	if err != nil {
		return e.fail("%v", err)
	}
	pollers, err := pollersByBuild(ctx, tc, cfg.Temporal.TaskQueue)
	if err != nil {
		return e.fail("%v", err)
	}
	e.printf("deployment %s: current %s", d.name, orUnversioned(d.current()))
	if d.ramping() != "" || d.rampPercent() > 0 {
		e.printf(", ramping %s at %g%%", orUnversioned(d.ramping()), d.rampPercent())
	}
	e.printf("\n")
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "BUILD\tSTATUS\tPOLLERS\tPINNED RUNNING\tRUNNING\tCREATED\tLAST CURRENT\n")
	for _, v := range d.versions {
		b := v.GetDeploymentVersion().GetBuildId()
		pinned, all, err := runningOn(ctx, tc, d.name, b)
		if err != nil {
			return e.fail("%v", err)
		}
		last := "-"
		if t := v.GetLastCurrentTime(); t != nil && !t.AsTime().IsZero() {
			last = fmtTime(t.AsTime())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", b, versionStatus(d, v), len(pollers[b]), pinned, all, fmtTime(v.GetCreateTime().AsTime()), last)
	}
	tw.Flush()
	if n := len(pollers[""]); n > 0 {
		e.printf("unversioned workers polling %s: %d (SYNCBRIDGE_VERSIONING=false)\n", cfg.Temporal.TaskQueue, n)
	}
	return exitOK
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

func deployCurrent(ctx context.Context, e *env, args []string) int {
	fs := newFlags("deploy current", "deploy current BUILD [--allow-no-pollers]", `
Makes BUILD the current version: every new record workflow starts on it,
and the pollers and reconciliation move to it at their next task. Records
already running stay on the build that started them. A ramp to BUILD ends.
'unversioned' routes new work back to workers running without versioning.
The server refuses a build no worker has polled with (start its workers
first) unless --allow-no-pollers.`)
	allowNoPollers := fs.Bool("allow-no-pollers", false, "accept a build no worker has polled with yet")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(e, fs, "want one BUILD")
	}
	d, _, tc, err := describeDeployment(ctx, e)
	if err != nil {
		return e.fail("%v", err)
	}
	return setCurrent(ctx, e, tc, d, buildArg(pos[0]), *allowNoPollers)
}

func setCurrent(ctx context.Context, e *env, tc client.Client, d deployment, build string, allowNoPollers bool) int {
	if build != "" && d.version(build) == nil {
		return e.fail("build %q is not a version of deployment %s (start its workers with SYNCBRIDGE_VERSIONING=true and SYNCBRIDGE_BUILD_ID=%s first; 'starter deploy list' shows the versions)", build, d.name, build)
	}
	err := retryBusy(ctx, func() error {
		_, err := tc.WorkerDeploymentClient().GetHandle(d.name).SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{
			BuildID:        build,
			AllowNoPollers: allowNoPollers,
		})
		return err
	})
	if err != nil {
		return e.fail("set current version of %s to %s: %v", d.name, orUnversioned(build), err)
	}
	e.printf("current: %s (was %s)\n", orUnversioned(build), orUnversioned(d.current()))
	if prev := d.current(); prev != "" && prev != build {
		e.printf("records started on %s finish there: keep its workers until 'starter deploy drained %s' exits 0\n", prev, prev)
	}
	return exitOK
}

func deployRamp(ctx context.Context, e *env, args []string) int {
	fs := newFlags("deploy ramp", "deploy ramp BUILD PERCENT | deploy ramp --stop", `
Sends PERCENT (0-100, fractions allowed) of new record workflows, and of the
pollers' and reconciliation's tasks, to BUILD; the rest go to the current
version. Each record stays on the build it started on. Raise the
percentage step by step while watching the build (README, "Deploying a new
build"), then make it current. --stop ends the ramp: everything new goes to
the current version again.`)
	stop := fs.Bool("stop", false, "end the ramp")
	allowNoPollers := fs.Bool("allow-no-pollers", false, "accept a build no worker has polled with yet")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	build, pct := "", 0.0
	switch {
	case *stop && len(pos) == 0:
	case *stop:
		return usageError(e, fs, "--stop takes no arguments")
	case len(pos) != 2:
		return usageError(e, fs, "want BUILD and PERCENT, or --stop")
	default:
		var err error
		pct, err = strconv.ParseFloat(pos[1], 32)
		if err != nil || pct < 0 || pct > 100 {
			return usageError(e, fs, "PERCENT must be a number from 0 to 100, got %q", pos[1])
		}
		build = buildArg(pos[0])
	}
	d, _, tc, err := describeDeployment(ctx, e)
	if err != nil {
		return e.fail("%v", err)
	}
	if *stop {
		return stopRamp(ctx, e, tc, d)
	}
	if build == d.current() {
		return e.fail("%s is already the current version", orUnversioned(build))
	}
	if build != "" && d.version(build) == nil {
		return e.fail("build %q is not a version of deployment %s ('starter deploy list' shows the versions)", build, d.name)
	}
	err = retryBusy(ctx, func() error {
		_, err := tc.WorkerDeploymentClient().GetHandle(d.name).SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{
			BuildID: build, Percentage: float32(pct), AllowNoPollers: *allowNoPollers,
		})
		return err
	})
	if err != nil {
		return e.fail("ramp %s to %g%%: %v", orUnversioned(build), pct, err)
	}
	e.printf("ramping: %s at %g%% (current %s)\n", orUnversioned(build), pct, orUnversioned(d.current()))
	return exitOK
}

func stopRamp(ctx context.Context, e *env, tc client.Client, d deployment) int {
	if d.ramping() == "" && d.rampPercent() == 0 {
		e.printf("no ramp in progress (current %s)\n", orUnversioned(d.current()))
		return exitOK
	}
	err := retryBusy(ctx, func() error {
		_, err := tc.WorkerDeploymentClient().GetHandle(d.name).SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{})
		return err
	})
	if err != nil {
		return e.fail("stop the ramp to %s: %v", orUnversioned(d.ramping()), err)
	}
	e.printf("ramp to %s stopped: all new work goes to %s\n", orUnversioned(d.ramping()), orUnversioned(d.current()))
	if d.ramping() != "" {
		e.printf("records started on %s finish there: keep its workers until 'starter deploy drained %s' exits 0\n", d.ramping(), d.ramping())
	}
	return exitOK
}

func deployRollback(ctx context.Context, e *env, args []string) int {
	fs := newFlags("deploy rollback", "deploy rollback [BUILD]", `
Undoes the last routing step. During a ramp, ends it (as 'deploy ramp
--stop'). Otherwise makes BUILD current again, by default the version that
was current most recently before the present one; its workers must be
running (start them again first if they were retired). Records started on
the build rolled back from stay on it and finish there: keep its workers
until 'starter deploy drained BUILD' exits 0.`)
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 1 {
		return usageError(e, fs, "at most one BUILD")
	}
	d, _, tc, err := describeDeployment(ctx, e)
	if err != nil {
		return e.fail("%v", err)
	}
	if len(pos) == 0 && (d.ramping() != "" || d.rampPercent() > 0) {
		return stopRamp(ctx, e, tc, d)
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
			return e.fail("no earlier current version of %s to roll back to; name one: 'starter deploy rollback BUILD' ('unversioned' for workers without versioning)", d.name)
		}
	}
	if target == d.current() {
		return e.fail("%s is already the current version", orUnversioned(target))
	}
	return setCurrent(ctx, e, tc, d, target, false)
}

func deployDrained(ctx context.Context, e *env, args []string) int {
	fs := newFlags("deploy drained", "deploy drained BUILD [--wait D]", `
Exits 0 when BUILD is drained: it is neither current nor ramping, the
server reports it drained, and no execution pinned to it is running, so its
workers can be stopped. Exits 1 otherwise, saying what it waits on. The
server checks drainage a few minutes after the version stopped taking new
work (a grace period for visibility), then every few minutes. --wait keeps
asking until drained or D has passed.`)
	wait := fs.Duration("wait", 0, "keep asking for up to this long")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(e, fs, "want one BUILD")
	}
	build := pos[0]
	deadline := time.Now().Add(*wait)
	for {
		d, _, tc, err := describeDeployment(ctx, e)
		if err != nil {
			return e.fail("%v", err)
		}
		why, err := notDrained(ctx, tc, d, build)
		if err != nil {
			return e.fail("%v", err)
		}
		if why == "" {
			e.printf("%s drained: no execution is pinned to it; its workers can stop\n", build)
			return exitOK
		}
		if !time.Now().Before(deadline) {
			return e.fail("%s not drained: %s", build, why)
		}
		e.progress("%s: %s", build, why)
		select {
		case <-ctx.Done():
			return e.fail("%s not drained: %s", build, why)
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
