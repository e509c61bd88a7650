package workflows

import (
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// TestReplayRecordedHistories replays histories recorded from the real
// server (by internal/workerapp's integration tests with
// SYNCBRIDGE_UPDATE_HISTORY=1) against the current code. A change that
// would break running workflows fails here. When a change is meant to alter
// the command sequence, gate it with workflow.GetVersion and keep the old
// histories.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("expected recorded histories in testdata, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}

// The replayer must be able to fail: a history whose workflow code changed
// its commands is rejected.
func TestReplayDetectsNonDeterminism(t *testing.T) {
	f := filepath.Join("testdata", "record_inserted.json")
	if _, err := os.Stat(f); err != nil {
		t.Skip("no recorded history yet")
	}
	r := worker.NewWorkflowReplayer()
	// A "RecordWorkflow" that completes at once instead of running the
	// insert activity the history recorded.
	r.RegisterWorkflowWithOptions(func(ctx workflow.Context, in contract.RecordInput) (contract.RecordResult, error) {
		return contract.RecordResult{}, nil
	}, workflow.RegisterOptions{Name: contract.RecordWorkflowName})
	if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err == nil {
		t.Fatal("replaying a history against different code succeeded")
	}
}
