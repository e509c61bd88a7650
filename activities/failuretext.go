package activities

import (
	failurepb "go.temporal.io/api/failure/v1"
)

// FailureTexter is implemented by the Temporal client workerapp hands to
// the activities: failures read raw from Describe are encrypted (the
// failure converter encodes their text), and only the process holding the
// keys can turn them back into a message.
type FailureTexter interface {
	FailureText(*failurepb.Failure) string
}

// failureText is f's message, decrypted when the client can.
func failureText(tc any, f *failurepb.Failure) string {
	if ft, ok := tc.(FailureTexter); ok {
		return ft.FailureText(f)
	}
	return f.GetMessage()
}
