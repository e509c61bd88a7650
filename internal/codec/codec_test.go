package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestRoundTripHidesPlaintext(t *testing.T) {
	c, err := New(key(1))
	if err != nil {
		t.Fatal(err)
	}
	dc := c.DataConverter()
	secret := `{"patientData":{"patientId":"P-4711","notes":"allergic to penicillin"}}`
	p, err := dc.ToPayload(secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.GetData(), []byte("penicillin")) || bytes.Contains(p.GetData(), []byte("P-4711")) {
		t.Fatal("encrypted payload contains plaintext")
	}
	var got string
	if err := dc.FromPayload(p, &got); err != nil {
		t.Fatal(err)
	}
	if got != secret {
		t.Fatalf("round trip: got %q", got)
	}
}

func TestRotationAndWrongKey(t *testing.T) {
	oldC, _ := New(key(1))
	p, err := oldC.DataConverter().ToPayload("x")
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := New(key(2), key(1))
	var got string
	if err := rotated.DataConverter().FromPayload(p, &got); err != nil || got != "x" {
		t.Fatalf("rotated codec must decode old payloads: %v %q", err, got)
	}
	stranger, _ := New(key(3))
	if err := stranger.DataConverter().FromPayload(p, &got); err == nil {
		t.Fatal("a codec without the key decoded the payload")
	}
}

func TestPlainPayloadsPassThrough(t *testing.T) {
	p, _ := converter.GetDefaultDataConverter().ToPayload("legacy")
	c, _ := New(key(1))
	var got string
	if err := c.DataConverter().FromPayload(p, &got); err != nil || got != "legacy" {
		t.Fatalf("plain payload: %v %q", err, got)
	}
}

func TestTamperDetected(t *testing.T) {
	c, _ := New(key(1))
	ps, _ := c.Encode([]*commonpb.Payload{mustPayload(t)})
	ps[0].Data[len(ps[0].Data)-1] ^= 1
	if _, err := c.Decode(ps); err == nil {
		t.Fatal("tampered payload decoded")
	}
}

func TestBadKeyLength(t *testing.T) {
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}

func mustPayload(t *testing.T) *commonpb.Payload {
	p, err := converter.GetDefaultDataConverter().ToPayload("tamper-me")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ring(t *testing.T, cur Key, old ...Key) *Keyring {
	t.Helper()
	r, err := NewKeyring(cur, old...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Rotation as operators do it: the new key becomes current under a new ID,
// the old one stays readable; payloads written before still decode, new
// ones carry the new ID, and a ring without the old key names the ID.
func TestRotationByID(t *testing.T) {
	k1, k2 := Key{ID: "2026-01", Secret: key(1)}, Key{ID: "2026-06", Secret: key(2)}
	before, err := ring(t, k1).Codec("default").Encode([]*commonpb.Payload{mustPayload(t)})
	if err != nil {
		t.Fatal(err)
	}
	rotated := ring(t, k2, k1).Codec("default")
	if _, err := rotated.Decode(before); err != nil {
		t.Fatalf("rotated ring cannot read the old key's payload: %v", err)
	}
	after, err := rotated.Encode([]*commonpb.Payload{mustPayload(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(after[0].Metadata[metaKeyID]); got != "2026-06" {
		t.Fatalf("new payload written with key %q, want the current one", got)
	}
	_, err = ring(t, k2).Codec("default").Decode(before)
	if err == nil || !strings.Contains(err.Error(), `"2026-01"`) {
		t.Fatalf("dropped key: want an error naming it, got %v", err)
	}
}

// A ciphertext moved to another namespace, or relabelled with another key
// ID that holds the same secret, does not open.
func TestAdditionalDataBindsNamespaceAndKeyID(t *testing.T) {
	r := ring(t, Key{ID: "a", Secret: key(1)}, Key{ID: "b", Secret: key(1)})
	ps, err := r.Codec("clinic-a").Encode([]*commonpb.Payload{mustPayload(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Codec("clinic-b").Decode(ps); err == nil {
		t.Fatal("payload decoded in another namespace")
	}
	if _, err := r.Codec("clinic-a").Decode(ps); err != nil {
		t.Fatalf("same namespace: %v", err)
	}
	ps[0].Metadata[metaKeyID] = []byte("b")
	if _, err := r.Codec("clinic-a").Decode(ps); err == nil {
		t.Fatal("payload decoded under another key ID")
	}
	ps[0].Metadata[metaKeyID] = []byte("a")
	delete(ps[0].Metadata, metaAAD)
	if _, err := r.Codec("clinic-a").Decode(ps); err == nil {
		t.Fatal("payload decoded after its additional-data marker was stripped")
	}
}

// Histories written before the namespace binding (key ID as the only
// additional data, no marker) must keep replaying.
func TestLegacyPayloadsStillDecode(t *testing.T) {
	secret := key(7)
	aead, err := newAEAD(secret)
	if err != nil {
		t.Fatal(err)
	}
	id := DeriveKeyID(secret)
	plain, _ := mustPayload(t).Marshal()
	nonce := make([]byte, aead.NonceSize())
	legacy := &commonpb.Payload{
		Metadata: map[string][]byte{metaEncoding: []byte(encoding), metaKeyID: []byte(id)},
		Data:     aead.Seal(nonce, nonce, plain, []byte(id)),
	}
	c := ring(t, Key{ID: "new", Secret: key(8)}, Key{ID: id, Secret: secret}).Codec("default")
	var got string
	if err := c.DataConverter().FromPayload(legacy, &got); err != nil || got != "tamper-me" {
		t.Fatalf("legacy payload: %v %q", err, got)
	}
}

func TestKeyringRejectsBadIDs(t *testing.T) {
	for _, ks := range [][]Key{
		{{ID: "", Secret: key(1)}},
		{{ID: "has space", Secret: key(1)}},
		{{ID: "x", Secret: key(1)}, {ID: "x", Secret: key(2)}},
	} {
		if _, err := NewKeyring(ks[0], ks[1:]...); err == nil {
			t.Errorf("accepted %v", ks)
		}
	}
}

// With the failure converter, an error text (which may quote a body) is
// not in the failure's plain fields, and converts back to the same text.
func TestFailureMessagesEncrypted(t *testing.T) {
	c := ring(t, Key{ID: "k", Secret: key(1)}).Codec("default")
	fc := c.FailureConverter()
	f := fc.ErrorToFailure(temporal.NewApplicationError("bad body for patient P-4711", "Invalid"))
	raw, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("P-4711")) {
		t.Fatal("failure carries the message in plaintext")
	}
	if back := fc.FailureToError(f); !strings.Contains(back.Error(), "P-4711") {
		t.Fatalf("decoded failure: %v", back)
	}
	if msg, ok := FailureMessage(c, f); !ok || msg != "bad body for patient P-4711" {
		t.Fatalf("FailureMessage: %q %t", msg, ok)
	}
	other := ring(t, Key{ID: "k", Secret: key(2)}).Codec("default")
	if msg, ok := FailureMessage(other, f); ok || msg != "" {
		t.Fatalf("wrong key: %q %t", msg, ok)
	}
	if _, ok := FailureMessage(nil, f); ok {
		t.Fatal("no key: decoded")
	}
}

// Decoding a failure must leave the failure itself encrypted: the SDK
// decodes local-activity failures that it then sends to the server.
func TestFailureDecodeLeavesTheFailureEncrypted(t *testing.T) {
	ring, err := NewKeyring(Key{ID: "k1", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	fc := ring.Codec("ns").FailureConverter()
	f := fc.ErrorToFailure(errors.New("patientId P-1: missing"))
	if err := fc.FailureToError(f); err == nil || !strings.Contains(err.Error(), "P-1") {
		t.Fatalf("decoded error %v, want the original text", err)
	}
	if strings.Contains(f.GetMessage(), "P-1") || f.GetEncodedAttributes() == nil {
		t.Fatalf("the failure was decrypted in place: %q", f.GetMessage())
	}
}
