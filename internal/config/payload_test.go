package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/codec"
)

func b64(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func TestPayloadKeyRequiredUnlessPlaintextChosen(t *testing.T) {
	m := valid()
	delete(m, "SYNCBRIDGE_PAYLOAD_KEY")
	mustFail(t, m, "SYNCBRIDGE_PAYLOAD_KEY", "SYNCBRIDGE_PAYLOAD_PLAINTEXT=true")
	c, err := Load(env(with(m, "SYNCBRIDGE_PAYLOAD_PLAINTEXT", "true")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Pipeline.PlaintextPayloads || len(c.Pipeline.PayloadKeys) != 0 {
		t.Fatalf("opt-out not applied: %+v", c.Pipeline)
	}
	if r, err := c.Keyring(); r != nil || err != nil {
		t.Fatalf("plaintext keyring: %v %v", r, err)
	}
	mustFail(t, with(valid(), "SYNCBRIDGE_PAYLOAD_PLAINTEXT", "true"), "choose one")
}

func TestPayloadKeysWithRotation(t *testing.T) {
	dir := t.TempDir()
	oldFile := filepath.Join(dir, "old")
	if err := os.WriteFile(oldFile, []byte("2026-01:"+b64(1)+"\n"+b64(2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(with(valid(), "SYNCBRIDGE_PAYLOAD_KEY", b64(3), "SYNCBRIDGE_PAYLOAD_KEY_ID", "2026-06",
		"SYNCBRIDGE_PAYLOAD_OLD_KEYS_FILE", oldFile)))
	if err != nil {
		t.Fatal(err)
	}
	ks := c.Pipeline.PayloadKeys
	if len(ks) != 3 || ks[0].ID != "2026-06" || ks[0].Secret[0] != 3 || ks[1].ID != "2026-01" ||
		ks[2].ID != codec.DeriveKeyID(bytes.Repeat([]byte{2}, 32)) {
		t.Fatalf("keys: %d, ids %q %q", len(ks), ks[0].ID, ks[1].ID)
	}
	r, err := c.Keyring()
	if err != nil || r.CurrentID() != "2026-06" {
		t.Fatalf("keyring: %v", err)
	}
	// Without an ID the current key keeps the derived one, as before.
	c, err = Load(env(valid()))
	if err != nil {
		t.Fatal(err)
	}
	if want := codec.DeriveKeyID(c.Pipeline.PayloadKeys[0].Secret); c.Pipeline.PayloadKeys[0].ID != want {
		t.Fatalf("derived id %q, want %q", c.Pipeline.PayloadKeys[0].ID, want)
	}
	for _, bad := range []string{"x:short", "id:" + b64(1) + ",id:" + b64(2), "not base64!"} {
		mustFail(t, with(valid(), "SYNCBRIDGE_PAYLOAD_OLD_KEYS", bad), "SYNCBRIDGE_PAYLOAD_OLD_KEYS")
	}
	_, err = Load(env(with(valid(), "SYNCBRIDGE_PAYLOAD_OLD_KEYS", "x:"+b64(9)+"junk")))
	if err == nil || strings.Contains(err.Error(), b64(9)) {
		t.Fatalf("bad old key must be refused without echoing it: %v", err)
	}
}

func TestCodecServerConfig(t *testing.T) {
	mustFail(t, with(valid(), "SYNCBRIDGE_CODEC_ADDR", "127.0.0.1:8081"), "SYNCBRIDGE_CODEC_TOKEN")
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if err := os.WriteFile(tok, []byte("t-one\nops-cli:t-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(with(valid(), "SYNCBRIDGE_CODEC_ADDR", "127.0.0.1:8081", "SYNCBRIDGE_CODEC_TOKEN_FILE", tok,
		"SYNCBRIDGE_CODEC_UI_ORIGIN", "https://ui.example.com/")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Codec.Addr != "127.0.0.1:8081" || len(c.Codec.Tokens) != 2 || c.Codec.UIOrigin != "https://ui.example.com" || c.Codec.TrustUIOrigin {
		t.Fatalf("codec: %+v", c.Codec)
	}
	if strings.Contains(c.String(), "t-one") {
		t.Fatal("token printed")
	}
	if n := c.Codec.Tokens[0].Name; !strings.HasPrefix(n, "unnamed-") || strings.Contains(n, "t-one") || c.Codec.Tokens[1].Name != "ops-cli" || c.Codec.Tokens[1].Secret != "t-two" {
		t.Fatalf("token names: %q %q", n, c.Codec.Tokens[1].Name)
	}
	mustFail(t, with(valid(), "SYNCBRIDGE_CODEC_TOKEN", "bad name:x"), "SYNCBRIDGE_CODEC_TOKEN")
	mustFail(t, with(valid(), "SYNCBRIDGE_CODEC_TOKEN", "a:x\na:y"), "SYNCBRIDGE_CODEC_TOKEN")
	mustFail(t, with(valid(), "SYNCBRIDGE_CODEC_UI_ORIGIN", "https://ui.example.com/path"), "SYNCBRIDGE_CODEC_UI_ORIGIN")
	mustFail(t, with(valid(), "SYNCBRIDGE_CODEC_AUTH", "ui-origin"), "SYNCBRIDGE_CODEC_UI_ORIGIN")
	m := with(valid(), "SYNCBRIDGE_CODEC_ADDR", "127.0.0.1:8081", "SYNCBRIDGE_CODEC_TOKEN", "x", "SYNCBRIDGE_PAYLOAD_PLAINTEXT", "true")
	delete(m, "SYNCBRIDGE_PAYLOAD_KEY")
	mustFail(t, m, "SYNCBRIDGE_CODEC_ADDR")
}

// One refusal per plaintext link to a non-loopback host, each lifted by
// its override; loopback needs none.
func TestTransportRefusalMQHTTP(t *testing.T) {
	mustFail(t, with(valid(), "ROCKETMQ_ENDPOINT", "http://123.mqrest.cn-hangzhou.aliyuncs.com"), "ROCKETMQ_ENDPOINT", "ROCKETMQ_ALLOW_HTTP")
	for _, ok := range []map[string]string{
		with(valid(), "ROCKETMQ_ENDPOINT", "https://123.mqrest.cn-hangzhou.aliyuncs.com"),
		with(valid(), "ROCKETMQ_ENDPOINT", "http://localhost:9876"),
		with(valid(), "ROCKETMQ_ENDPOINT", "http://[::1]:9876"),
		with(valid(), "ROCKETMQ_ENDPOINT", "http://mq.internal", "ROCKETMQ_ALLOW_HTTP", "true"),
	} {
		if _, err := Load(env(ok)); err != nil {
			t.Errorf("%s: %v", ok["ROCKETMQ_ENDPOINT"], err)
		}
	}
}

func TestTransportRefusalDBPlaintext(t *testing.T) {
	m := valid()
	delete(m, "POLARDB_ALLOW_PLAINTEXT")
	mustFail(t, m, "POLARDB_TLS", "POLARDB_ALLOW_PLAINTEXT")
	mustFail(t, with(m, "POLARDB_TLS", "preferred"), "POLARDB_TLS", "preferred")
	dsn := with(m, "POLARDB_DSN", "u:p@tcp(10.0.0.1:3306)/records?tls=preferred")
	delete(dsn, "POLARDB_ENDPOINT")
	mustFail(t, dsn, "POLARDB_TLS")
	for _, ok := range []map[string]string{
		with(m, "POLARDB_TLS", "true"),
		with(m, "POLARDB_TLS", "skip-verify"),
		with(m, "POLARDB_ENDPOINT", "127.0.0.1:3306"),
		with(m, "POLARDB_ALLOW_PLAINTEXT", "true"),
	} {
		if _, err := Load(env(ok)); err != nil {
			t.Errorf("%v", err)
		}
	}
}

func TestTransportRefusalAPIKeyWithoutTLS(t *testing.T) {
	m := with(valid(), "TEMPORAL_ADDRESS", "ns.acct.tmprl.cloud:7233", "TEMPORAL_API_KEY", "k", "TEMPORAL_TLS", "false")
	mustFail(t, m, "TEMPORAL_TLS", "TEMPORAL_ALLOW_PLAINTEXT_API_KEY")
	for _, ok := range []map[string]string{
		with(m, "TEMPORAL_TLS", "auto"),
		with(m, "TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		with(m, "TEMPORAL_ALLOW_PLAINTEXT_API_KEY", "true"),
	} {
		if _, err := Load(env(ok)); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// ui-origin trusts a header any program can send, so it starts only on a
// loopback listener, or where the deployment declares the port published
// on loopback alone (docker-compose.yml).
func TestCodecUIOriginOnlyOnLoopback(t *testing.T) {
	base := with(valid(), "SYNCBRIDGE_CODEC_TOKEN", "x", "SYNCBRIDGE_CODEC_AUTH", "ui-origin", "SYNCBRIDGE_CODEC_UI_ORIGIN", "http://127.0.0.1:8233")
	for _, addr := range []string{"0.0.0.0:8234", ":8234", "10.0.0.5:8234", "codec.internal:8234"} {
		mustFail(t, with(base, "SYNCBRIDGE_CODEC_ADDR", addr), "SYNCBRIDGE_CODEC_AUTH")
	}
	for _, ok := range []map[string]string{
		with(base, "SYNCBRIDGE_CODEC_ADDR", "127.0.0.1:8234"),
		with(base, "SYNCBRIDGE_CODEC_ADDR", "[::1]:8234"),
		with(base, "SYNCBRIDGE_CODEC_ADDR", "localhost:8234"),
		with(base, "SYNCBRIDGE_CODEC_ADDR", "0.0.0.0:8081", "SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED", "true"),
		with(base, "SYNCBRIDGE_CODEC_ADDR", "0.0.0.0:8234", "SYNCBRIDGE_CODEC_AUTH", "token"),
	} {
		if _, err := Load(env(ok)); err != nil {
			t.Errorf("%s: %v", ok["SYNCBRIDGE_CODEC_ADDR"], err)
		}
	}
}

func TestCodecOIDCConfig(t *testing.T) {
	oidc := with(valid(), "SYNCBRIDGE_CODEC_ADDR", "0.0.0.0:8081",
		"SYNCBRIDGE_CODEC_OIDC_ISSUER", "https://sso.example.com/realms/clinic",
		"SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "https://sso.example.com/realms/clinic/protocol/openid-connect/certs",
		"SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "syncbridge-codec",
		"SYNCBRIDGE_CODEC_OIDC_GROUPS_CLAIM", "realm_access.roles",
		"SYNCBRIDGE_CODEC_OIDC_GROUPS", "phi-readers, on-call")
	c, err := Load(env(oidc))
	if err != nil {
		t.Fatal(err) // no service token needed with an issuer
	}
	if o := c.Codec.OIDC; o.Audience != "syncbridge-codec" || o.GroupsClaim != "realm_access.roles" || strings.Join(o.Groups, "|") != "phi-readers|on-call" {
		t.Fatalf("oidc: %+v", o)
	}
	if c, _ := Load(env(with(valid()))); c.Codec.OIDC.GroupsClaim != "groups" {
		t.Fatalf("default groups claim %q", c.Codec.OIDC.GroupsClaim)
	}
	mustFail(t, with(oidc, "SYNCBRIDGE_CODEC_OIDC_AUDIENCE", ""), "SYNCBRIDGE_CODEC_OIDC_AUDIENCE")
	mustFail(t, with(oidc, "SYNCBRIDGE_CODEC_OIDC_GROUPS", " , "), "SYNCBRIDGE_CODEC_OIDC_GROUPS")
	mustFail(t, with(oidc, "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", ""), "SYNCBRIDGE_CODEC_OIDC_JWKS_URL")
	mustFail(t, with(oidc, "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "http://sso.example.com/certs"), "SYNCBRIDGE_CODEC_OIDC_JWKS_URL")
	mustFail(t, with(oidc, "SYNCBRIDGE_CODEC_OIDC_ISSUER", ""), "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "SYNCBRIDGE_CODEC_OIDC_GROUPS")
	if _, err := Load(env(with(oidc, "SYNCBRIDGE_CODEC_OIDC_ISSUER", "http://127.0.0.1:5556", "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "http://127.0.0.1:5556/keys"))); err != nil {
		t.Fatalf("loopback issuer: %v", err)
	}
}
