package activities

import (
	"testing"

	failurepb "go.temporal.io/api/failure/v1"
)

type texter struct{}

func (texter) FailureText(f *failurepb.Failure) string { return "decrypted: " + f.GetMessage() }

// The stuck report's last failure goes through the client's decryption
// when it has one, and is the raw message otherwise.
func TestFailureTextUsesTheClientsDecryption(t *testing.T) {
	f := &failurepb.Failure{Message: "Encoded failure"}
	if got := failureText(texter{}, f); got != "decrypted: Encoded failure" {
		t.Fatalf("with texter: %q", got)
	}
	if got := failureText(nil, f); got != "Encoded failure" {
		t.Fatalf("without: %q", got)
	}
}
