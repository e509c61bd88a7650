package activities

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// Whether a recorded start input may hold Initial deliveries decides if a
// run without delivery signals is worth re-driving.
func TestHasInitialDeliveries(t *testing.T) {
	plain := converter.GetDefaultDataConverter()
	c, err := codec.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := c.DataConverter()
	for _, tc := range []struct {
		name string
		dc   converter.DataConverter
		in   contract.RecordInput
		want bool
	}{
		{"poller start", plain, contract.RecordInput{Key: "k"}, false},
		{"with initial", plain, contract.RecordInput{Key: "k", Initial: []contract.Delivery{{MessageID: "m"}}}, true},
		{"encrypted: unknown, assumed", encrypted, contract.RecordInput{Key: "k"}, true},
	} {
		p, err := tc.dc.ToPayloads(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got := hasInitialDeliveries(&historypb.WorkflowExecutionStartedEventAttributes{Input: p})
		if got != tc.want {
			t.Errorf("%s: got %t", tc.name, got)
		}
	}
	if hasInitialDeliveries(&historypb.WorkflowExecutionStartedEventAttributes{Input: &commonpb.Payloads{}}) {
		t.Error("empty input")
	}
}
