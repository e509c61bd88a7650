package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

// Why a keeper: the poller workflows used to be started only when a worker
// started. A poller that failed stayed dead until some worker restarted,
// and `starter pollers stop` was undone by the next restart. Now every
// worker re-ensures the pollers on a ticker, and the operator's stop
// intent is a row in the database (store.SetPollersStopped) that outlives
// restarts and Temporal's retention; only `starter pollers start` clears
// it.

// PollerKeepEvery is how often a worker re-ensures its pipeline's pollers.
// A failed poller is back within this time.
const PollerKeepEvery = 30 * time.Second

// Memo keys on poller workflows: the pipeline a poller belongs to, so a
// worker of another pipeline in the same namespace can tell it apart.
const (
	memoTaskQueue        = "taskQueue"
	memoWorkflowIDPrefix = "workflowIDPrefix"
)

// errPipelineClash marks a configuration that shares a task queue or a
// workflow ID prefix with another pipeline: no retry can fix it.
var errPipelineClash = errors.New("pipeline configuration clashes with another pipeline")

// keepPollersRetryFirst is how soon a first round that failed for a
// passing reason (Temporal restarting, a slow answer) is tried again.
const keepPollersRetryFirst = 2 * time.Second

// keepPollers ensures the pollers now and then every `every` until ctx
// ends. Only a clash with another pipeline's configuration stops the
// worker from starting; any other failure (Temporal or the database
// briefly unreachable) is logged and retried, sooner for the first
// round: a worker started while Temporal restarts must not exit for it.
func keepPollers(ctx context.Context, tc client.Client, st *store.Store, cfg config.Config, runFor, every time.Duration, log *slog.Logger) (stop func(), err error) {
	next := every
	if err := ensureUnlessStopped(ctx, tc, st, cfg, runFor, log); err != nil {
		if errors.Is(err, errPipelineClash) {
			return nil, err
		}
		log.Warn("could not ensure the poller workflows; retrying", "in", keepPollersRetryFirst, "error", err)
		next = keepPollersRetryFirst
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(next):
			}
			err := ensureUnlessStopped(ctx, tc, st, cfg, runFor, log)
			switch {
			case err == nil || ctx.Err() != nil:
				next = every
			case next < every:
				next = min(2*next, every)
				log.Warn("could not ensure the poller workflows; retrying", "in", next, "error", err)
			default:
				log.Warn("could not re-ensure the poller workflows; retrying", "every", every, "error", err)
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

func ensureUnlessStopped(ctx context.Context, tc client.Client, st *store.Store, cfg config.Config, runFor time.Duration, log *slog.Logger) error {
	if err := checkSharedNamespace(ctx, tc, cfg); err != nil {
		return err
	}
	stopped, err := st.PollersStopped(ctx, cfg.MQ.Topic, cfg.MQ.Group)
	if err != nil {
		return fmt.Errorf("read the pollers' stop intent: %w", err)
	}
	if stopped {
		log.Debug("pollers stopped by the operator; not starting them (`starter pollers start` resumes)", "topic", cfg.MQ.Topic, "group", cfg.MQ.Group)
		return nil
	}
	if err := EnsurePollers(ctx, tc, cfg, runFor); err != nil {
		return err
	}
	// `pollers stop` may have recorded its intent and signalled between
	// the read above and the start: look again and stop what this round
	// may have started, so the operator's stop is never undone.
	if stopped, err := st.PollersStopped(ctx, cfg.MQ.Topic, cfg.MQ.Group); err == nil && stopped {
		for i := 0; i < cfg.Pipeline.Pollers; i++ {
			_ = tc.SignalWorkflow(ctx, contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i), "", contract.SignalStopPoller, nil)
		}
	}
	return nil
}

// checkSharedNamespace refuses a configuration that would make two
// pipelines (different topic or group) in one namespace touch each other:
// on a shared task queue a worker runs the other pipeline's poller
// workflows with its own topic and group; with a shared record workflow ID
// prefix a key present on both topics maps to one workflow.
func checkSharedNamespace(ctx context.Context, tc client.Client, cfg config.Config) error {
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: 1000,
		Query:    fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", contract.PollerWorkflowName),
	})
	if err != nil {
		return fmt.Errorf("list running pollers: %w", err)
	}
	ours := strings.TrimSuffix(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "0")
	// Memos are payloads, encrypted like every other: read them with this
	// worker's converter (pipelines of one fleet share a key).
	dc := converter.GetDefaultDataConverter()
	if c, err := PayloadCodec(cfg); err == nil && c != nil {
		dc = c.DataConverter()
	}
	for _, x := range resp.GetExecutions() {
		id := x.GetExecution().GetWorkflowId()
		if isPollerOf(id, ours) {
			continue
		}
		// The memo is unreadable when the other pipeline encrypts with
		// another key, and absent on pollers started by older workers:
		// then only the task queue is compared.
		var prefix string
		p, ok := x.GetMemo().GetFields()[memoWorkflowIDPrefix]
		known := ok && dc.FromPayload(p, &prefix) == nil
		switch {
		case x.GetTaskQueue() == cfg.Temporal.TaskQueue:
			return fmt.Errorf("%w: task queue %q is already used by poller %s of another pipeline: give each topic/group its own SYNCBRIDGE_TASK_QUEUE",
				errPipelineClash, cfg.Temporal.TaskQueue, id)
		case known && prefix == cfg.Pipeline.WorkflowIDPrefix:
			return fmt.Errorf("%w: record workflow ID prefix %q is already used by poller %s of another pipeline: give each topic/group its own SYNCBRIDGE_WORKFLOW_ID_PREFIX",
				errPipelineClash, cfg.Pipeline.WorkflowIDPrefix, id)
		}
	}
	return nil
}

// isPollerOf reports whether id is poller <ours><n>: the rest must be the
// index alone, so group "g-2" is not taken for an index of group "g".
func isPollerOf(id, ours string) bool {
	rest, ok := strings.CutPrefix(id, ours)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
