package workerapp

import (
	"context"
	"os"
	"path/filepath"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
)

// UpdateHistoryEnv, when set to 1, makes replayLive also write the history
// it replayed to workflows/testdata, refreshing the recorded histories the
// workflows package replays on every run.
const UpdateHistoryEnv = "SYNCBRIDGE_UPDATE_HISTORY"

// replayLive fetches a finished workflow's history from the server and
// replays it against the current workflow code: a non-deterministic change
// fails here before it can break running workflows.
func (p *pipe) replayLive(workflowID, saveAs string) {
	p.t.Helper()
	p.replayRun(workflowID, "", saveAs)
}

// replayRun is replayLive for one run of the workflow ("": the latest).
func (p *pipe) replayRun(workflowID, runID, saveAs string) {
	p.t.Helper()
	h := historypb.History{Events: p.runHistory(workflowID, runID)}
	var o worker.WorkflowReplayerOptions
	if p.env.Codec != nil { // decode with the test's key, as a worker would
		o.DataConverter = p.env.Codec.DataConverter()
		o.FailureConverter = p.env.Codec.FailureConverter()
	}
	r, err := worker.NewWorkflowReplayerWithOptions(o)
	if err != nil {
		p.t.Fatal(err)
	}
	RegisterWorkflows(r)
	if err := r.ReplayWorkflowHistory(nil, &h); err != nil {
		p.t.Fatalf("replay of %s (%d events): %v", workflowID, len(h.Events), err)
	}
	if saveAs != "" && os.Getenv(UpdateHistoryEnv) == "1" {
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
		if err != nil {
			p.t.Fatal(err)
		}
		path := filepath.Join("..", "..", "workflows", "testdata", saveAs)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			p.t.Fatal(err)
		}
		p.t.Logf("wrote %s (%d events)", path, len(h.Events))
	}
}

// history returns the events of a workflow's latest run.
func (p *pipe) history(workflowID string) []*historypb.HistoryEvent {
	p.t.Helper()
	return p.runHistory(workflowID, "")
}

// runHistory returns the events of one run of a workflow ("": the latest).
func (p *pipe) runHistory(workflowID, runID string) []*historypb.HistoryEvent {
	p.t.Helper()
	it := p.env.Client.GetWorkflowHistory(context.Background(), workflowID, runID, false, 0)
	var evs []*historypb.HistoryEvent
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			p.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}
