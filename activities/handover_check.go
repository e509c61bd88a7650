package activities

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Hand-over pre-checks. Temporal refuses some requests deterministically
// (workflow ID too long, payload too large, signal limit reached); such a
// refusal repeats on every redelivery until the broker dead-letters the
// message with no trace in the database. The poller therefore checks what
// it can before calling Temporal, classifies what it cannot, and in both
// cases quarantines the message with a reason and acks it.

// Reasons for messages refused at hand-over (quarantine reason codes, next
// to syncevent's).
const (
	ReasonKeyTooLong       = "key_too_long" // workflow ID (prefix + key) over the server's limit
	ReasonKeyReserved      = "key_reserved" // workflow ID could collide with the project's own (contract.IsReservedWorkflowID)
	ReasonBodyTooLarge     = syncevent.ReasonBodyTooLarge
	ReasonHandoverRejected = "handover_rejected" // Temporal refused the hand-over as invalid
	// ReasonSignalLimit: the key's running workflow reached Temporal's
	// signal limit. Not a quarantine reason: the message is committed by
	// the poller directly, like a redelivery of a completed key.
	ReasonSignalLimit = "signal_limit"
)

// Temporal's defaults (limit.maxIDLength, limit.blobSize.error).
const (
	DefaultMaxWorkflowIDBytes = 1000
	DefaultMaxPayloadBytes    = 2 << 20
	// PayloadOverhead is what a delivery's payload adds to its JSON, with
	// room to spare: payload metadata and framing (tens of bytes) and, with
	// SYNCBRIDGE_PAYLOAD_KEY, the encryption envelope (about 150 bytes).
	PayloadOverhead = 16 << 10
)

// maxWorkflowIDBytes and maxPayloadBytes apply the defaults to zero fields.
func (s Settings) maxWorkflowIDBytes() int {
	if s.MaxWorkflowIDBytes > 0 {
		return s.MaxWorkflowIDBytes
	}
	return DefaultMaxWorkflowIDBytes
}

func (s Settings) maxPayloadBytes() int {
	if s.MaxPayloadBytes > 0 {
		return s.MaxPayloadBytes
	}
	return DefaultMaxPayloadBytes
}

func (s Settings) maxBodyBytes() int {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return syncevent.DefaultMaxBodyBytes
}

// ParseLimits are the syncevent limits these settings imply.
func (s Settings) ParseLimits() syncevent.Limits {
	return syncevent.Limits{MaxBodyBytes: s.MaxBodyBytes, DeviceTimeNotBefore: s.DeviceTimeNotBefore, DeviceTimeMaxAhead: s.DeviceTimeMaxAhead}
}

// CheckHandover reports whether the delivery d of key can be handed to its
// record workflow. When it cannot, reason is the quarantine reason and
// detail says why without quoting the key or the body (patient data).
// Keyless messages never reach a workflow and are not checked here.
func (s Settings) CheckHandover(key string, d contract.Delivery) (reason, detail string, ok bool) {
	id := contract.RecordWorkflowID(s.WorkflowIDPrefix, key)
	// Protobuf strings must be valid UTF-8: the client would fail to
	// encode the request, on every redelivery.
	if !utf8.ValidString(id) {
		return syncevent.ReasonInvalidUTF8, "key: not valid UTF-8", false
	}
	if n, max := len(id), s.maxWorkflowIDBytes(); n > max {
		return ReasonKeyTooLong, fmt.Sprintf("workflow ID (prefix and key): %d bytes, Temporal accepts %d", n, max), false
	}
	if contract.IsReservedWorkflowID(id) {
		return ReasonKeyReserved, "key: its workflow ID could collide with one of syncbridge's own workflows (pollers, reconcile, replays, conflict resolution)", false
	}
	// The parser would refuse it anyway; refusing here keeps the body out
	// of workflow history.
	if n, max := len(d.Body), s.maxBodyBytes(); n > max {
		return ReasonBodyTooLarge, fmt.Sprintf("body: %d bytes, max %d", n, max), false
	}
	// The exact size costs two JSON encodings, more than parsing the body;
	// only a delivery whose bound comes near the limit is worth it.
	if deliverySizeBound(d)+PayloadOverhead > s.maxPayloadBytes() {
		if n, max := EncodedDeliverySize(d)+PayloadOverhead, s.maxPayloadBytes(); n > max {
			return ReasonBodyTooLarge, fmt.Sprintf("body: encoded delivery about %d bytes, Temporal accepts %d", n, max), false
		}
	}
	return "", "", true
}

// emptyDeliverySize is the encoded size of a Delivery of zero values.
var emptyDeliverySize = EncodedDeliverySize(contract.Delivery{})

// deliverySizeBound is at least EncodedDeliverySize(d), computed without
// encoding: every string byte escaped at its longest (\u00XX, 6 bytes),
// both integers at their longest (20 characters), the body as base64.
func deliverySizeBound(d contract.Delivery) int {
	n := emptyDeliverySize + 6*(len(d.MessageID)+len(d.ReceiptHandle)+len(d.Tag)) + 2*20
	if d.Body != nil {
		n += 2 + base64.StdEncoding.EncodedLen(len(d.Body))
	}
	return n
}

// EncodedDeliverySize is the exact size of d as the SDK's default data
// converter encodes it (JSON, with Body base64-encoded), computed without
// encoding the body.
func EncodedDeliverySize(d contract.Delivery) int {
	body := d.Body
	d.Body = nil
	b, err := json.Marshal(d)
	if err != nil {
		// Strings and integers always marshal.
		panic(fmt.Sprintf("activities: marshal delivery: %v", err))
	}
	if body == nil {
		return len(b)
	}
	// "null" becomes a quoted base64 string.
	return len(b) - len("null") + 2 + base64.StdEncoding.EncodedLen(len(body))
}

// IsPermanentHandoverError reports whether err, from SignalWithStartWorkflow,
// is a refusal that will repeat on every redelivery, and its reason.
// Temporal answers InvalidArgument for those; the reason is refined from
// the server's message where it is known (the message is not an API
// contract, so anything else is handover_rejected). ReasonSignalLimit means
// the message must be committed outside the workflow, not quarantined.
func IsPermanentHandoverError(err error) (reason string, ok bool) {
	var inv *serviceerror.InvalidArgument
	if !errors.As(err, &inv) {
		return "", false
	}
	msg := strings.ToLower(inv.Error())
	switch {
	case strings.Contains(msg, "limit for signal"):
		return ReasonSignalLimit, true
	case strings.Contains(msg, "workflowid") && strings.Contains(msg, "length"):
		return ReasonKeyTooLong, true
	case strings.Contains(msg, "blob data size exceeds"):
		return ReasonBodyTooLarge, true
	}
	return ReasonHandoverRejected, true
}

// quarantineAndAck keeps a message that cannot be handed over, with its
// reason, then acks it: committed to quarantine, it must not be redelivered
// until the broker dead-letters it.
func (a *Activities) quarantineAndAck(ctx context.Context, key string, d contract.Delivery, reason, detail string) error {
	activity.GetLogger(ctx).Warn("message quarantined at hand-over", "messageId", d.MessageID, "reason", reason)
	if err := a.Quarantine(ctx, QuarantineInput{Key: key, Delivery: d, Reason: reason, Detail: detail}); err != nil {
		return err
	}
	_, err := a.Ack(ctx, AckInput{Handles: []string{d.ReceiptHandle}})
	return err
}

// refusedHandover settles a message Temporal refused for good (see
// IsPermanentHandoverError). At the signal limit the key's workflow cannot
// take more deliveries, but the message itself is fine: it is committed
// here, as for a key whose workflow completed.
func (a *Activities) refusedHandover(ctx context.Context, key string, d contract.Delivery, reason string, err error) error {
	if reason == ReasonSignalLimit {
		return a.commitAndAck(ctx, key, d)
	}
	// The server's message names the limit, never the payload.
	return a.quarantineAndAck(ctx, key, d, reason, "Temporal refused the hand-over: "+serverMessage(err))
}

func serverMessage(err error) string {
	var inv *serviceerror.InvalidArgument
	if errors.As(err, &inv) {
		return inv.Error()
	}
	return err.Error()
}
