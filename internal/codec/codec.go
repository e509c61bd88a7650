// Package codec encrypts Temporal payloads with AES-256-GCM, so message
// bodies (patient data) travel and rest in Temporal history as ciphertext.
// Workflow IDs, search attributes and failure messages are not payloads and
// stay readable: the pipeline never puts patient data in them.
//
// Every worker and the starter must use the same key. Rotating keys means
// running old and new side by side: Decode picks the key by its ID.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

const (
	metaEncoding = "encoding"
	metaKeyID    = "encryption-key-id"
	// encoding marks an encrypted payload; the Web UI shows it as such.
	encoding = "binary/encrypted"
)

// AESGCM is a converter.PayloadCodec.
type AESGCM struct {
	keyID string
	aead  cipher.AEAD
	// old keys, by ID, accepted for decoding only.
	decoders map[string]cipher.AEAD
}

// New builds a codec that encrypts with key (32 bytes) and also decodes
// payloads written with any of old.
func New(key []byte, old ...[]byte) (*AESGCM, error) {
	c := &AESGCM{decoders: map[string]cipher.AEAD{}}
	for i, k := range append([][]byte{key}, old...) {
		id, aead, err := build(k)
		if err != nil {
			return nil, fmt.Errorf("payload key %d: %w", i, err)
		}
		if i == 0 {
			c.keyID, c.aead = id, aead
		}
		c.decoders[id] = aead
	}
	return c, nil
}

func build(key []byte) (string, cipher.AEAD, error) {
	if len(key) != 32 {
		return "", nil, fmt.Errorf("need 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", nil, err
	}
	// The ID names the key without revealing it.
	sum := sha256.Sum256(append([]byte("syncbridge-key-id:"), key...))
	return hex.EncodeToString(sum[:6]), aead, nil
}

// DataConverter wraps the default converter with this codec.
func (c *AESGCM) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// Encode implements converter.PayloadCodec.
func (c *AESGCM) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("marshal payload: %w", err)
		}
		nonce := make([]byte, c.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{metaEncoding: []byte(encoding), metaKeyID: []byte(c.keyID)},
			Data:     c.aead.Seal(nonce, nonce, plain, []byte(c.keyID)),
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
		if string(p.GetMetadata()[metaEncoding]) != encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[metaKeyID])
		aead, ok := c.decoders[id]
		if !ok {
			return nil, fmt.Errorf("payload encrypted with unknown key id %q", id)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return nil, fmt.Errorf("encrypted payload too short")
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("decrypt payload: %w", err)
		}
		var dec commonpb.Payload
		if err := dec.Unmarshal(plain); err != nil {
			return nil, fmt.Errorf("unmarshal decrypted payload: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}
