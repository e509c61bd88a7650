package devstack

import (
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/mqemu"
)

// The banner says whether payloads are encrypted, where the codec server
// is, whether the UI uses it, and exports what a second terminal needs.
func TestBannerSaysHowPayloadsAreProtected(t *testing.T) {
	s := &Stack{
		Temporal: &Temporal{addr: "127.0.0.1:7233", ns: "default"},
		MQServer: &mqemu.Server{URL: "http://127.0.0.1:9876"},
		DSN:      "root@tcp(127.0.0.1:3307)/syncbridge",
		DB:       &EmbeddedDB{},
	}
	if b := s.Banner(""); !strings.Contains(b, "PLAINTEXT") {
		t.Fatalf("no warning for plaintext payloads:\n%s", b)
	}
	s.Payloads = PayloadInfo{
		KeyNote: "the dev key in /tmp/x.payload-key", CodecURL: "http://127.0.0.1:8234", UIDecodes: true,
		Env: [][2]string{{"SYNCBRIDGE_PAYLOAD_KEY_FILE", "/tmp/x.payload-key"}},
	}
	b := s.Banner("")
	for _, want := range []string{"encrypted (AES-256-GCM) with the dev key in /tmp/x.payload-key", "http://127.0.0.1:8234 (the Web UI decodes through it",
		"--codec-endpoint http://127.0.0.1:8234", "export SYNCBRIDGE_PAYLOAD_KEY_FILE=/tmp/x.payload-key"} {
		if !strings.Contains(b, want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "PLAINTEXT") {
		t.Error("encrypted stack announced as plaintext")
	}
	s.Payloads.UIDecodes = false
	if b := s.Banner(""); !strings.Contains(b, "shows ciphertext") {
		t.Errorf("banner does not say the UI shows ciphertext:\n%s", b)
	}
}
