package codec

import (
	"bytes"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
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
