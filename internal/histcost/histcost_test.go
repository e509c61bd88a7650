package histcost

import (
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"
)

// The recorded histories in workflows/testdata are real server histories:
// the old shape (signal-with-start, two regular activities, an upsert)
// costs five actions; the lean shape two.
func TestPricesRecordedHistories(t *testing.T) {
	for _, tc := range []struct {
		file           string
		events, action int
	}{
		{"record_inserted.json", 19, 5},
		// Lean shape, with a redelivery signalled during its first task
		// (which the server then failed, so the task ran again).
		{"record_v2_inserted.json", 11, 3},
		// Lean shape, quarantined: three local activities in one batch
		// and the SyncOutcome upsert an operator needs.
		{"record_v2_quarantined.json", 9, 3},
	} {
		h, err := client.HistoryFromJSON(openFile(t, filepath.Join("..", "..", "workflows", "testdata", tc.file)), client.HistoryJSONOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := Of(h.GetEvents())
		if got.Events != tc.events || got.Actions != tc.action {
			t.Errorf("%s: %+v, want %d events and %d actions", tc.file, got, tc.events, tc.action)
		}
	}
}

func openFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
