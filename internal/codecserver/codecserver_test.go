package codecserver

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/codec"
)

const uiOrigin = "http://127.0.0.1:8233"

func setup(t *testing.T, o Options) (*httptest.Server, *codec.Keyring, *bytes.Buffer) {
	t.Helper()
	r, err := codec.NewKeyring(codec.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	o.Keyring = r
	o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	srv := httptest.NewServer(Handler(o))
	t.Cleanup(srv.Close)
	return srv, r, &logs
}

const secret = `{"patientId":"P-4711","notes":"allergic to penicillin"}`

func encrypted(t *testing.T, r *codec.Keyring, ns string) []byte {
	t.Helper()
	p, err := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), r.Codec(ns)).ToPayload(json.RawMessage(secret))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{p}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDecodeWithTokenUnderEveryPath(t *testing.T) {
	srv, r, logs := setup(t, Options{Tokens: []Token{{"old", "old-token"}, {"cli", "tok-9f2e"}}})
	auth := map[string]string{"Authorization": "Bearer tok-9f2e"}
	for _, tc := range []struct {
		path string
		ns   string
		hdr  map[string]string
	}{
		{"/decode", "default", auth},
		{"/clinic/decode", "clinic", auth},
		{"/decode", "clinic", map[string]string{"Authorization": "Bearer tok-9f2e", "X-Namespace": "clinic"}},
	} {
		resp, body := post(t, srv.URL+tc.path, encrypted(t, r, tc.ns), tc.hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, body)
		}
		var out commonpb.Payloads
		if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Payloads) != 1 {
			t.Fatalf("%s: %v %s", tc.path, err, body)
		}
		if got := string(out.Payloads[0].Data); got != secret {
			t.Fatalf("%s: decoded %q", tc.path, got)
		}
	}
	// A payload of one namespace does not decode as another's.
	if resp, _ := post(t, srv.URL+"/other/decode", encrypted(t, r, "clinic"), auth); resp.StatusCode == 200 {
		t.Fatal("decoded across namespaces")
	}
	// Encode then decode round-trips through the endpoint.
	plain, _ := json.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(secret)}}})
	resp, enc := post(t, srv.URL+"/default/encode", plain, auth)
	if resp.StatusCode != 200 || strings.Contains(enc, "P-4711") {
		t.Fatalf("encode: %d %s", resp.StatusCode, enc)
	}
	if strings.Contains(logs.String(), "P-4711") || strings.Contains(logs.String(), "tok-9f2e") {
		t.Fatalf("log carries a payload or token: %s", logs.String())
	}
}

func TestRefusals(t *testing.T) {
	srv, r, logs := setup(t, Options{Tokens: []Token{{"cli", "tok"}}, UIOrigin: uiOrigin, MaxBodyBytes: 2048})
	body := encrypted(t, r, "default")
	for name, hdr := range map[string]map[string]string{
		"no token":              nil,
		"wrong token":           {"Authorization": "Bearer nope"},
		"ui origin, token mode": {"Origin": uiOrigin},
	} {
		resp, out := post(t, srv.URL+"/decode", body, hdr)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(out, "P-4711") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, out)
		}
	}
	resp, _ := post(t, srv.URL+"/decode", bytes.Repeat([]byte("x"), 4096), map[string]string{"Authorization": "Bearer tok"})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", resp.StatusCode)
	}
	if resp, _ := post(t, srv.URL+"/a/b/decode", body, map[string]string{"Authorization": "Bearer tok"}); resp.StatusCode != 404 {
		t.Errorf("bad path: %d", resp.StatusCode)
	}
	if strings.Contains(logs.String(), "P-4711") {
		t.Fatal("payload logged")
	}
}

func TestCORSOnlyForUIOrigin(t *testing.T) {
	srv, r, _ := setup(t, Options{Tokens: []Token{{"cli", "tok"}}, UIOrigin: uiOrigin})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/default/decode", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	ok := preflight(uiOrigin)
	if ok.StatusCode != http.StatusNoContent || ok.Header.Get("Access-Control-Allow-Origin") != uiOrigin ||
		!strings.Contains(ok.Header.Get("Access-Control-Allow-Headers"), "X-Namespace") {
		t.Fatalf("UI preflight: %d %v", ok.StatusCode, ok.Header)
	}
	bad := preflight("https://evil.example")
	if bad.StatusCode == http.StatusNoContent || bad.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight granted: %d %v", bad.StatusCode, bad.Header)
	}
	// Even with a valid token, a foreign page's request gets no grant, so
	// the browser withholds the answer from it.
	resp, _ := post(t, srv.URL+"/decode", encrypted(t, r, "default"), map[string]string{"Authorization": "Bearer tok", "Origin": "https://evil.example"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("foreign origin granted CORS")
	}
	resp, _ = post(t, srv.URL+"/decode", encrypted(t, r, "default"), map[string]string{"Authorization": "Bearer tok", "Origin": uiOrigin})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != uiOrigin {
		t.Fatalf("UI origin: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestTrustUIOrigin(t *testing.T) {
	srv, r, _ := setup(t, Options{Tokens: []Token{{"cli", "tok"}}, UIOrigin: uiOrigin, TrustUIOrigin: true})
	if resp, _ := post(t, srv.URL+"/decode", encrypted(t, r, "default"), map[string]string{"Origin": uiOrigin}); resp.StatusCode != 200 {
		t.Fatalf("UI origin without token: %d", resp.StatusCode)
	}
	for _, hdr := range []map[string]string{nil, {"Origin": "https://evil.example"}} {
		if resp, _ := post(t, srv.URL+"/decode", encrypted(t, r, "default"), hdr); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%v: %d", hdr, resp.StatusCode)
		}
	}
}
