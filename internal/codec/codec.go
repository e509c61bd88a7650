// Package codec encrypts Temporal payloads with AES-256-GCM, so message
// bodies (patient data) travel and rest in Temporal history as ciphertext.
// With FailureConverter, failure messages and stack traces are encrypted
// too (they may quote a body); workflow IDs and search attributes are not
// payloads and stay readable: the pipeline never puts patient data in them.
//
// Keys rotate without stopping anything: a Keyring holds the current key,
// which writes, and any number of old keys, which only read. A payload
// names its key by ID in its metadata, so a history written under an old
// key keeps replaying after the switch, as long as the old key stays in
// the ring until those executions are past retention.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

const (
	metaEncoding = "encoding"
	metaKeyID    = "encryption-key-id"
	// metaAAD names the additional-data scheme. Payloads written before
	// it existed have none and were sealed with the key ID alone; they
	// still open, but cannot be re-sealed that way (Encode always binds
	// the namespace), so the marker cannot be stripped to move a new
	// ciphertext: GCM would reject it.
	metaAAD = "encryption-aad"
	aadV2   = "keyid+namespace/v2"
	// encoding marks an encrypted payload; the Web UI shows it as such.
	encoding = "binary/encrypted"
)

// Key is one AES-256 key and the ID payloads name it by.
type Key struct {
	ID     string
	Secret []byte // 32 bytes
}

var validID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// DeriveKeyID is the ID of a key given without one: a hash prefix that
// names the key without revealing it. It is what every payload written
// before explicit IDs carries, so keys from that time keep their ID.
func DeriveKeyID(secret []byte) string {
	sum := sha256.Sum256(append([]byte("syncbridge-key-id:"), secret...))
	return hex.EncodeToString(sum[:6])
}

// Keyring is the set of keys a process can use. It is safe for concurrent
// use; Codec views share it.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring builds a ring that writes with current and reads with current
// and every key of old. IDs must be unique.
func NewKeyring(current Key, old ...Key) (*Keyring, error) {
	r := &Keyring{current: current.ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range append([]Key{current}, old...) {
		if !validID.MatchString(k.ID) {
			return nil, fmt.Errorf("payload key ID %q: want 1-64 of A-Z a-z 0-9 . _ -", k.ID)
		}
		if _, dup := r.aeads[k.ID]; dup {
			return nil, fmt.Errorf("payload key ID %q given twice", k.ID)
		}
		aead, err := newAEAD(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %w", k.ID, err)
		}
		r.aeads[k.ID] = aead
	}
	return r, nil
}

// CurrentID is the ID new payloads are written with.
func (r *Keyring) CurrentID() string { return r.current }

// Has reports whether the ring holds a key with this ID.
func (r *Keyring) Has(id string) bool {
	_, ok := r.aeads[id]
	return ok
}

// KeyIDOf is the key ID an encrypted payload names, "" for a payload this
// package did not encrypt. It is caller-supplied metadata, not proof: check
// it with Has before trusting it as one of the ring's IDs.
func KeyIDOf(p *commonpb.Payload) string {
	if !IsEncrypted(p) {
		return ""
	}
	return string(p.GetMetadata()[metaKeyID])
}

// Codec is the ring's codec for one namespace: the namespace is bound into
// every ciphertext, so a payload copied into another namespace's history
// does not decrypt there.
func (r *Keyring) Codec(namespace string) *AESGCM {
	return &AESGCM{ring: r, namespace: namespace}
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("need 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// AESGCM is a converter.PayloadCodec bound to one namespace.
type AESGCM struct {
	ring      *Keyring
	namespace string
}

// New builds a codec for namespace "" that encrypts with key (32 bytes,
// ID derived) and also decodes payloads written with any of old. Tests and
// tools use it; processes build a Keyring from configuration.
func New(key []byte, old ...[]byte) (*AESGCM, error) {
	cur := Key{ID: DeriveKeyID(key), Secret: key}
	var olds []Key
	for _, o := range old {
		olds = append(olds, Key{ID: DeriveKeyID(o), Secret: o})
	}
	r, err := NewKeyring(cur, olds...)
	if err != nil {
		return nil, err
	}
	return r.Codec(""), nil
}

// DataConverter wraps the default converter with this codec.
func (c *AESGCM) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter puts failure messages and stack traces into an
// encoded (so encrypted) attribute instead of plain failure fields; the
// history then shows "Encoded failure" until decoded.
func (c *AESGCM) FailureConverter() converter.FailureConverter {
	return decodeCopies{temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          c.DataConverter(),
		EncodeCommonAttributes: true,
	})}
}

// decodeCopies decodes a copy of a failure, never the failure itself. The
// SDK's converter decrypts message and stack trace in place, and the SDK
// hands it failures that are about to be sent too: a local activity's
// marker is applied to the workflow (decoded) before its command goes to
// the server, which then stored the decrypted text in history.
type decodeCopies struct{ converter.FailureConverter }

func (d decodeCopies) FailureToError(f *failurepb.Failure) error {
	if f == nil {
		return nil
	}
	return d.FailureConverter.FailureToError(proto.Clone(f).(*failurepb.Failure))
}

func aad(version, keyID, namespace string) []byte {
	if version == "" {
		return []byte(keyID) // payloads from before the namespace binding
	}
	// Length-prefixed, so no (id, namespace) pair can imitate another.
	return fmt.Appendf(nil, "%s|%d:%s|%d:%s", version, len(keyID), keyID, len(namespace), namespace)
}

// Encode implements converter.PayloadCodec.
func (c *AESGCM) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	id := c.ring.current
	aead := c.ring.aeads[id]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("marshal payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				metaEncoding: []byte(encoding),
				metaKeyID:    []byte(id),
				metaAAD:      []byte(aadV2),
			},
			Data: aead.Seal(nonce, nonce, plain, aad(aadV2, id, c.namespace)),
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec. Payloads that are not
// encrypted pass through, so history written before encryption was turned
// on still replays.
func (c *AESGCM) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if !IsEncrypted(p) {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[metaKeyID])
		aead, ok := c.ring.aeads[id]
		if !ok {
			return nil, fmt.Errorf("payload encrypted with unknown key id %q (add it to SYNCBRIDGE_PAYLOAD_OLD_KEYS)", id)
		}
		version := string(p.GetMetadata()[metaAAD])
		if version != "" && version != aadV2 {
			return nil, fmt.Errorf("payload uses unknown additional-data scheme %q", version)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return nil, fmt.Errorf("encrypted payload too short")
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], aad(version, id, c.namespace))
		if err != nil {
			return nil, fmt.Errorf("decrypt payload with key %q (wrong key, or written for another namespace than %q): %w", id, c.namespace, err)
		}
		var dec commonpb.Payload
		if err := dec.Unmarshal(plain); err != nil {
			return nil, fmt.Errorf("unmarshal decrypted payload: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}

// IsEncrypted reports whether p was written by this codec.
func IsEncrypted(p *commonpb.Payload) bool {
	return string(p.GetMetadata()[metaEncoding]) == encoding
}

// FailureMessage is f's message, decrypted when the failure converter
// encoded it. Failures read from DescribeWorkflowExecution or a history
// are raw protos that no converter has seen. ok is false when the message
// is encoded and c (nil: no key) cannot decrypt it.
func FailureMessage(c *AESGCM, f *failurepb.Failure) (msg string, ok bool) {
	if f.GetEncodedAttributes() == nil {
		return f.GetMessage(), true
	}
	if c == nil {
		return "", false
	}
	// The SDK's encoded form (converter.EncodeCommonFailureAttributes).
	var attrs struct {
		Message string `json:"message"`
	}
	if err := c.DataConverter().FromPayload(f.GetEncodedAttributes(), &attrs); err != nil {
		return "", false
	}
	return attrs.Message, true
}
