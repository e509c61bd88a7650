package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// Temporal reads that several commands share.

func countRunningRecords(ctx context.Context, tc client.Client, cfg config.Config) (int64, error) {
	return countWorkflows(ctx, tc, fmt.Sprintf("%s AND ExecutionStatus = 'Running' AND TaskQueue = '%s'",
		contract.RecordTypesQuery, escapeQuery(cfg.Temporal.TaskQueue)))
}

// taskQueuePoll is a worker that polled the task queue recently.
type taskQueuePoll struct {
	Identity   string    `json:"identity"`
	BuildID    string    `json:"buildId,omitempty"` // empty: unversioned
	LastPollAt time.Time `json:"lastPollAt"`
}

// taskQueuePollers lists the workers polling queue for workflow or
// activity tasks: one entry per identity and build (its latest poll), by
// identity. Workers of two builds can share an identity (one process
// running both, as in tests), and each build's pollers count apart.
func taskQueuePollers(ctx context.Context, tc client.Client, queue string) ([]taskQueuePoll, error) {
	type worker struct{ identity, build string }
	latest := map[worker]time.Time{}
	for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
		d, err := tc.DescribeTaskQueue(ctx, queue, typ)
		if err != nil {
			return nil, fmt.Errorf("describe task queue %s: %w", queue, err)
		}
		for _, p := range d.GetPollers() {
			w := worker{p.GetIdentity(), p.GetDeploymentOptions().GetBuildId()}
			if t := p.GetLastAccessTime().AsTime().UTC(); t.After(latest[w]) {
				latest[w] = t
			}
		}
	}
	out := make([]taskQueuePoll, 0, len(latest))
	for w, t := range latest {
		out = append(out, taskQueuePoll{Identity: w.identity, BuildID: w.build, LastPollAt: t})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Identity != out[j].Identity {
			return out[i].Identity < out[j].Identity
		}
		return out[i].BuildID < out[j].BuildID
	})
	return out, nil
}

func statusName(s enumspb.WorkflowExecutionStatus) string {
	return snake(s.String())
}

// snake turns an enum name, "ActivityTaskCompleted" or
// "EVENT_TYPE_ACTIVITY_TASK_COMPLETED" depending on the API version, into
// "activity_task_completed".
func snake(s string) string {
	for _, p := range []string{"EVENT_TYPE_", "WORKFLOW_EXECUTION_STATUS_", "PENDING_ACTIVITY_STATE_"} {
		s = strings.TrimPrefix(s, p)
	}
	if strings.ToUpper(s) == s {
		return strings.ToLower(s)
	}
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// escapeQuery quotes a value for a visibility query string literal.
func escapeQuery(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}
