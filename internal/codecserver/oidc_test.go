package codecserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/uber-go/tally/v4"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/syncbridge/syncbridge/internal/codec"
)

// issuer is a local identity provider: it signs tokens with its current
// key and publishes its key set on a loopback JWKS endpoint, counting
// fetches.
type issuer struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey // private; published as public
	fetches atomic.Int32
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{t: t}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) url() string  { return is.srv.URL }
func (is *issuer) jwks() string { return is.srv.URL + "/jwks.json" }

// publish replaces the published key set.
func (is *issuer) publish(keys ...jose.JSONWebKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

func rsaKey(t *testing.T, kid string) jose.JSONWebKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}
}

func ecKey(t *testing.T, kid string) jose.JSONWebKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// sign makes a compact JWT of claims with key.
func sign(t *testing.T, key jose.JSONWebKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const audience = "syncbridge-codec"

func (is *issuer) claims(sub string, mod func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": is.url(), "sub": sub, "aud": []string{audience, "temporal-ui"},
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"realm_access": map[string]any{"roles": []string{"staff", "phi-readers"}},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func accessTokens(t *testing.T, is *issuer) *AccessTokens {
	t.Helper()
	a, err := NewAccessTokens(OIDCOptions{
		Issuer: is.url(), JWKSURL: is.jwks(), Audience: audience,
		GroupsClaim: "realm_access.roles", Groups: []string{"phi-readers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type auditLine struct {
	Msg       string   `json:"msg"`
	Op        string   `json:"op"`
	Who       string   `json:"who"`
	Auth      string   `json:"auth"`
	Namespace string   `json:"namespace"`
	Payloads  int      `json:"payloads"`
	KeyIDs    []string `json:"keyIDs"`
	Outcome   string   `json:"outcome"`
	Reason    string   `json:"reason"`
}

// auditLines parses the JSON log and returns its audit lines.
func auditLines(t *testing.T, log *bytes.Buffer) []auditLine {
	t.Helper()
	var out []auditLine
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if l == "" {
			continue
		}
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if a.Msg == "codec audit" {
			out = append(out, a)
		}
	}
	return out
}

func jsonSetup(t *testing.T, o Options) (*httptest.Server, *codec.Keyring, *bytes.Buffer) {
	t.Helper()
	r, err := codec.NewKeyring(codec.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	o.Keyring = r
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	srv := httptest.NewServer(Handler(o))
	t.Cleanup(srv.Close)
	return srv, r, &logs
}

// Only a valid access token of an allowed group decodes; expired,
// wrong-audience, wrong-issuer, wrong-group and forged tokens are refused
// and each refusal is on the audit trail with its reason.
func TestAccessTokenDecodesOnlyWhenValid(t *testing.T) {
	is := newIssuer(t)
	key := rsaKey(t, "rsa-1")
	is.publish(key)
	scope := tally.NewTestScope("", nil)
	srv, r, logs := jsonSetup(t, Options{Tokens: []Token{{"cli", "tok-9f2e"}}, AccessTokens: accessTokens(t, is), Metrics: scope})
	body := encrypted(t, r, "default")
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	resp, out := post(t, srv.URL+"/default/decode", body, bearer(sign(t, key, is.claims("nurse-ana", nil))))
	if resp.StatusCode != 200 || !strings.Contains(decodedData(t, out), "P-4711") {
		t.Fatalf("valid token: %d %s", resp.StatusCode, out)
	}

	forger := rsaKey(t, "rsa-1") // same key ID, not the issuer's key
	refused := map[string]string{
		"expired": sign(t, key, is.claims("nurse-ana", func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		})),
		"wrong audience": sign(t, key, is.claims("nurse-ana", func(c map[string]any) { c["aud"] = "another-app" })),
		"wrong group": sign(t, key, is.claims("clerk-bo", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"staff"}}
		})),
		"no group claim": sign(t, key, is.claims("clerk-bo", func(c map[string]any) { delete(c, "realm_access") })),
		"wrong issuer":   sign(t, key, is.claims("nurse-ana", func(c map[string]any) { c["iss"] = "https://evil.example" })),
		"forged":         sign(t, forger, is.claims("nurse-ana", nil)),
		"alg none":       unsigned(is.claims("nurse-ana", nil)),
	}
	for name, tok := range refused {
		resp, out := post(t, srv.URL+"/default/decode", body, bearer(tok))
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(out, "P-4711") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, out)
		}
	}

	lines := auditLines(t, logs)
	if len(lines) != 1+len(refused) {
		t.Fatalf("%d audit lines for %d calls: %s", len(lines), 1+len(refused), logs)
	}
	if a := lines[0]; a.Who != "nurse-ana" || a.Auth != "oidc" || a.Outcome != "ok" || a.Payloads != 1 || strings.Join(a.KeyIDs, ",") != "k1" {
		t.Fatalf("valid call's audit line: %+v", a)
	}
	reasons := map[string]bool{}
	for _, a := range lines[1:] {
		if a.Outcome != "denied" || a.Payloads != 0 {
			t.Errorf("refused call audited as %+v", a)
		}
		reasons[a.Reason] = true
		// Only a token that verified names its subject: a forged one
		// must not put a name of its choosing on the trail.
		if a.Who != "" && a.Who != "clerk-bo" {
			t.Errorf("unverified subject on the trail: %+v", a)
		}
	}
	for _, want := range []string{"access token expired", "access token: wrong audience", "access token: group not allowed", "access token: wrong issuer", "access token invalid"} {
		if !reasons[want] {
			t.Errorf("no refusal with reason %q in %v", want, reasons)
		}
	}
	if strings.Contains(logs.String(), "P-4711") || strings.Contains(logs.String(), "eyJ") {
		t.Fatalf("log carries a payload or a token: %s", logs)
	}
	counts := map[string]int64{}
	for _, c := range scope.Snapshot().Counters() {
		if c.Name() == "codec_requests" {
			counts[c.Tags()["auth"]+"/"+c.Tags()["outcome"]] += c.Value()
		}
	}
	if counts["oidc/ok"] != 1 || counts["oidc/denied"]+counts["none/denied"] != int64(len(refused)) {
		t.Fatalf("codec_requests: %v", counts)
	}
}

// unsigned is a JWT with "alg":"none", which must never verify.
func unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": "rsa-1"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

func decodedData(t *testing.T, body string) string {
	t.Helper()
	var out commonpb.Payloads
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Payloads) == 0 {
		t.Fatalf("not payloads: %v %s", err, body)
	}
	return string(out.Payloads[0].Data)
}

// The issuer rotates to a new key (another algorithm, too): the codec
// server fetches the key set again on the first token with the unknown key
// ID and accepts it, without a restart; once the old key is withdrawn and
// the set re-fetched, tokens signed with it stop working. Between
// rotations the set is served from cache.
func TestAccessTokenKeyRotation(t *testing.T) {
	is := newIssuer(t)
	oldKey, newKey := rsaKey(t, "2026-11"), ecKey(t, "2026-12")
	is.publish(oldKey)
	srv, r, _ := jsonSetup(t, Options{AccessTokens: accessTokens(t, is)})
	body := encrypted(t, r, "default")
	decode := func(key jose.JSONWebKey) int {
		resp, _ := post(t, srv.URL+"/decode", body, map[string]string{"Authorization": "Bearer " + sign(t, key, is.claims("nurse-ana", nil))})
		return resp.StatusCode
	}
	if got := decode(oldKey); got != 200 {
		t.Fatalf("old key before rotation: %d", got)
	}
	if got := decode(oldKey); got != 200 || is.fetches.Load() != 1 {
		t.Fatalf("second call: %d after %d key-set fetches, want 200 from the cache", got, is.fetches.Load())
	}
	// Keys the issuer does not publish yet are refused.
	if got := decode(newKey); got != http.StatusUnauthorized {
		t.Fatalf("unpublished key: %d", got)
	}
	is.publish(newKey) // rotation: the old key is withdrawn
	if got := decode(newKey); got != 200 {
		t.Fatalf("rotated key not picked up: %d", got)
	}
	if got := decode(oldKey); got != http.StatusUnauthorized {
		t.Fatalf("withdrawn key still accepted: %d", got)
	}
}

// A trusted-origin codec server does not start on an address other hosts
// reach, so a forged Origin header from there never meets it.
func TestUIOriginRefusedOffLoopback(t *testing.T) {
	o := Options{UIOrigin: uiOrigin, TrustUIOrigin: true}
	if ln, err := Listen("0.0.0.0:0", o); err == nil {
		ln.Close()
		t.Fatal("ui-origin listener on 0.0.0.0 accepted")
	} else if !strings.Contains(err.Error(), "ui-origin") {
		t.Fatalf("unclear refusal: %v", err)
	}
	ln, err := Listen("127.0.0.1:0", o)
	if err != nil {
		t.Fatalf("loopback refused: %v", err)
	}
	ln.Close()
	// Tokens only: any address.
	ln, err = Listen("0.0.0.0:0", Options{Tokens: []Token{{"cli", "tok"}}})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// The declared exception (a container alone on its network, published
	// on the host's loopback; docker-compose.yml).
	o.LoopbackPublished = true
	ln, err = Listen("0.0.0.0:0", o)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// Every decode leaves exactly one audit line naming who and how many,
// however it ends, and no line carries the patient marker.
func TestAuditOneLinePerCall(t *testing.T) {
	const marker = "PATIENT-MARKER-7f3c"
	is := newIssuer(t)
	key := ecKey(t, "ec-1")
	is.publish(key)
	srv, r, logs := jsonSetup(t, Options{Tokens: []Token{{"ops-cli", "tok-9f2e"}}, AccessTokens: accessTokens(t, is), UIOrigin: uiOrigin, TrustUIOrigin: true})
	conv := func(ns string, n int) []byte {
		var ps []*commonpb.Payload
		for i := 0; i < n; i++ {
			p, err := r.Codec(ns).Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"name":"` + marker + `"}`)}})
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p...)
		}
		b, _ := json.Marshal(&commonpb.Payloads{Payloads: ps})
		return b
	}
	calls := []struct {
		path string
		hdr  map[string]string
		body []byte
		want auditLine
	}{
		{"/clinic/decode", map[string]string{"Authorization": "Bearer " + sign(t, key, is.claims("nurse-ana", nil))}, conv("clinic", 3),
			auditLine{Op: "decode", Who: "nurse-ana", Auth: "oidc", Namespace: "clinic", Payloads: 3, Outcome: "ok"}},
		{"/decode", map[string]string{"Authorization": "Bearer tok-9f2e", "X-Namespace": "clinic"}, conv("clinic", 2),
			auditLine{Op: "decode", Who: "token:ops-cli", Auth: "token", Namespace: "clinic", Payloads: 2, Outcome: "ok"}},
		{"/decode", map[string]string{"Origin": uiOrigin}, conv("default", 1),
			auditLine{Op: "decode", Who: "ui-origin", Auth: "ui-origin", Namespace: "default", Payloads: 1, Outcome: "ok"}},
		// Decrypting under the wrong namespace fails: still one line.
		{"/other/decode", map[string]string{"Authorization": "Bearer tok-9f2e"}, conv("clinic", 1),
			auditLine{Op: "decode", Who: "token:ops-cli", Auth: "token", Namespace: "other", Payloads: 1, Outcome: "failed"}},
		{"/decode", nil, conv("default", 1),
			auditLine{Op: "decode", Auth: "none", Namespace: "default", Outcome: "denied"}},
	}
	for i, c := range calls {
		before := len(auditLines(t, logs))
		post(t, srv.URL+c.path, c.body, c.hdr)
		lines := auditLines(t, logs)
		if len(lines) != before+1 {
			t.Fatalf("call %d wrote %d audit lines: %s", i, len(lines)-before, logs)
		}
		got := lines[len(lines)-1]
		got.Msg, got.Reason = "", ""
		keys := strings.Join(got.KeyIDs, ",")
		got.KeyIDs = nil
		if got.Who != c.want.Who || got.Auth != c.want.Auth || got.Namespace != c.want.Namespace || got.Payloads != c.want.Payloads || got.Outcome != c.want.Outcome || got.Op != c.want.Op {
			t.Errorf("call %d audited as %+v, want %+v", i, got, c.want)
		}
		if c.want.Payloads > 0 && keys != "k1" {
			t.Errorf("call %d: key IDs %q", i, keys)
		}
	}
	if strings.Contains(logs.String(), marker) {
		t.Fatalf("patient marker in the log: %s", logs)
	}
}

// The audit trail does not depend on the log level: a worker quieted to
// errors still records every decode.
func TestAuditWrittenAtAnyLogLevel(t *testing.T) {
	r, err := codec.NewKeyring(codec.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	quiet := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	srv := httptest.NewServer(Handler(Options{Keyring: r, DefaultNamespace: "default", Tokens: []Token{{"cli", "tok-9f2e"}}, Logger: quiet}))
	defer srv.Close()
	post(t, srv.URL+"/decode", encrypted(t, r, "default"), map[string]string{"Authorization": "Bearer tok-9f2e"})
	if lines := auditLines(t, &logs); len(lines) != 1 || lines[0].Who != "token:cli" {
		t.Fatalf("audit lines at level error: %s", logs.String())
	}
}
