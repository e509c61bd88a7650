package workerapp

import (
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/config"
)

// failureTextClient is the Temporal client handed to the activities. It
// adds FailureText (activities.FailureTexter) so that an activity reading
// a raw failure from DescribeWorkflowExecution (reconciliation's stuck
// report) shows the decrypted message, not "Encoded failure".
type failureTextClient struct {
	client.Client
	codec *codec.AESGCM // nil: payloads are plaintext
}

// FailureText implements activities.FailureTexter.
func (c failureTextClient) FailureText(f *failurepb.Failure) string {
	if msg, ok := codec.FailureMessage(c.codec, f); ok {
		return msg
	}
	return "(encrypted failure; this worker's keys cannot decrypt it)"
}

func withFailureText(tc client.Client, cfg config.Config) client.Client {
	c, err := PayloadCodec(cfg)
	if err != nil { // cannot happen after Dial built the same codec
		c = nil
	}
	return failureTextClient{Client: tc, codec: c}
}
