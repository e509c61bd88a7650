package main

import (
	"fmt"

	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// encodedFailureMessage is what the SDK puts in a failure's message when
// the real one is in its encoded (encrypted) attributes.
const encodedFailureMessage = "Encoded failure"

// failureText is a failure's message, decrypted with the configured keys.
// Failures read from Describe or history are raw protos: the client's
// converters never see them. When they cannot be decrypted, the text says
// so instead of showing the placeholder as if it were the error.
func (e *env) failureText(f *failurepb.Failure) string {
	if f == nil {
		return ""
	}
	if f.GetEncodedAttributes() == nil {
		return f.GetMessage()
	}
	var dc converter.DataConverter
	if cfg, err := e.config(); err == nil {
		if c, err := workerapp.PayloadCodec(cfg); err == nil && c != nil {
			dc = c.DataConverter()
		}
	}
	if dc == nil {
		return "(encrypted; cannot decrypt: no payload key configured, set SYNCBRIDGE_PAYLOAD_KEY)"
	}
	g := proto.Clone(f).(*failurepb.Failure)
	// It leaves the placeholder message when decoding fails.
	converter.DecodeCommonFailureAttributes(dc, g)
	if g.GetMessage() != encodedFailureMessage {
		return g.GetMessage()
	}
	return "(encrypted; cannot decrypt with the configured keys: SYNCBRIDGE_PAYLOAD_KEY / SYNCBRIDGE_PAYLOAD_OLD_KEYS must hold the key it was written with)"
}

// undecryptable explains a payload that could not be read.
func undecryptable(err error) string {
	return fmt.Sprintf("cannot be read (no payload key, or not the key it was written with: set SYNCBRIDGE_PAYLOAD_KEY and SYNCBRIDGE_PAYLOAD_OLD_KEYS): %v", err)
}
