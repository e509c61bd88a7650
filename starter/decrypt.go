package main

import (
	"fmt"

	failurepb "go.temporal.io/api/failure/v1"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// failureText is a failure's message, decrypted with the configured keys.
// When it cannot be decrypted the text says so, instead of showing the
// SDK's "Encoded failure" placeholder as if it were the error.
func (e *env) failureText(f *failurepb.Failure) string {
	if f == nil {
		return ""
	}
	c, _ := workerapp.PayloadCodec(e.cfg)
	if msg, ok := codec.FailureMessage(c, f); ok {
		return msg
	}
	if c == nil {
		return "(encrypted; cannot decrypt: no payload key configured, set SYNCBRIDGE_PAYLOAD_KEY)"
	}
	return "(encrypted; cannot decrypt with the configured keys: SYNCBRIDGE_PAYLOAD_KEY / SYNCBRIDGE_PAYLOAD_OLD_KEYS must hold the key it was written with)"
}

// undecryptable explains a payload that could not be read.
func undecryptable(err error) string {
	return fmt.Sprintf("cannot be read (no payload key, or not the key it was written with: set SYNCBRIDGE_PAYLOAD_KEY and SYNCBRIDGE_PAYLOAD_OLD_KEYS): %v", err)
}
