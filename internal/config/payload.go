package config

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/syncbridge/syncbridge/internal/codec"
)

// payloadKeys reads the current key, its ID, the old keys and the
// plaintext opt-out. Encryption is the default: the history of a record
// workflow holds patient data, and a forgotten variable must stop the
// worker, not silently write it readable.
func (l *loader) payloadKeys() ([]codec.Key, bool) {
	plaintext := l.boolean("SYNCBRIDGE_PAYLOAD_PLAINTEXT")
	raw := l.secret("SYNCBRIDGE_PAYLOAD_KEY", false)
	id := l.str("SYNCBRIDGE_PAYLOAD_KEY_ID")
	oldRaw := l.secret("SYNCBRIDGE_PAYLOAD_OLD_KEYS", false)
	if raw == "" {
		switch {
		case oldRaw != "" || id != "":
			l.fail("SYNCBRIDGE_PAYLOAD_KEY", "is required when SYNCBRIDGE_PAYLOAD_KEY_ID or SYNCBRIDGE_PAYLOAD_OLD_KEYS is set")
		case !plaintext:
			l.fail("SYNCBRIDGE_PAYLOAD_KEY", "is required: patient data is encrypted in Temporal by default "+
				"(generate one with `openssl rand -base64 32`), or set SYNCBRIDGE_PAYLOAD_PLAINTEXT=true to run without encryption on purpose")
		}
		return nil, plaintext
	}
	if plaintext {
		l.fail("SYNCBRIDGE_PAYLOAD_PLAINTEXT", "is true but SYNCBRIDGE_PAYLOAD_KEY is set; choose one")
		return nil, false
	}
	secret, ok := decodeKey(raw)
	if !ok {
		l.fail("SYNCBRIDGE_PAYLOAD_KEY", "must be 32 bytes, base64-encoded (value not shown)")
		return nil, false
	}
	if id == "" {
		id = codec.DeriveKeyID(secret)
	}
	keys := []codec.Key{{ID: id, Secret: secret}}
	for i, entry := range strings.FieldsFunc(oldRaw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		// Base64 has no ':', so "ID:key" and a bare key are unambiguous;
		// a bare key gets the derived ID, which is what payloads written
		// under it before explicit IDs carry.
		oid, b64, hasID := strings.Cut(entry, ":")
		if !hasID {
			b64, oid = oid, ""
		}
		s, ok := decodeKey(b64)
		if !ok {
			l.fail("SYNCBRIDGE_PAYLOAD_OLD_KEYS", fmt.Sprintf("entry %d must be ID:base64key or base64key of 32 bytes (value not shown)", i+1))
			continue
		}
		if oid == "" {
			oid = codec.DeriveKeyID(s)
		}
		keys = append(keys, codec.Key{ID: oid, Secret: s})
	}
	if _, err := codec.NewKeyring(keys[0], keys[1:]...); err != nil {
		l.fail("SYNCBRIDGE_PAYLOAD_KEY", "and SYNCBRIDGE_PAYLOAD_OLD_KEYS: "+err.Error())
	}
	return keys, false
}

func decodeKey(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	return b, err == nil && len(b) == 32
}
