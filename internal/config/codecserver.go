package config

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// CodecServer configures the Temporal codec-server endpoint (served by
// the worker or `starter codec-server`), so the Web UI and `temporal
// --codec-endpoint` can show payloads decrypted to those allowed to see
// them. There are three ways in: a service token, a person's access token
// the UI passes (OIDC), and, on a loopback-only listener, the UI's origin.
type CodecServer struct {
	// Addr is the listen address; "" = not served.
	Addr string
	// Tokens are the accepted service tokens (several during a rotation),
	// each with the name the audit trail records.
	Tokens []CodecToken // secret
	// OIDC, when its Issuer is set, accepts the access token the Web UI
	// passes for the signed-in person.
	OIDC CodecOIDC
	// UIOrigin is the only Origin granted CORS ("" = none): the browser
	// refuses codec answers to any other page.
	UIOrigin string
	// TrustUIOrigin also accepts requests without a token when their
	// Origin is UIOrigin: how a UI without a login (local stack) decodes.
	// An Origin header is a claim any program can send, so this is only
	// accepted on a loopback listen address, or with LoopbackPublished.
	TrustUIOrigin bool
	// LoopbackPublished declares that a non-loopback Addr is reachable
	// only through a port published on the host's loopback (a container
	// alone on its own network, as in docker-compose.yml).
	LoopbackPublished bool
}

// CodecToken is one service token.
type CodecToken struct {
	// Name is what the audit trail records ("name:secret" in the
	// setting), or unnamed-<hash prefix> for a bare secret.
	Name   string
	Secret string
}

// CodecOIDC says whose access tokens decode.
type CodecOIDC struct {
	// Issuer must equal the tokens' iss claim; "" = access tokens off.
	Issuer string
	// JWKSURL publishes the issuer's signing keys (cached, re-fetched for
	// an unknown key ID).
	JWKSURL string
	// Audience must be among the tokens' aud values.
	Audience string
	// GroupsClaim names the group or role claim; dots walk into objects.
	GroupsClaim string
	// Groups allowed to decode; a token needs one of them.
	Groups []string
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// codecTokenName names a bare token for the audit trail without
// revealing it: a hash prefix, like a payload key's derived ID.
func codecTokenName(secret string) string {
	sum := sha256.Sum256([]byte("syncbridge-codec-token:" + secret))
	return "unnamed-" + hex.EncodeToString(sum[:4])
}

func (l *loader) codecServer() CodecServer {
	var c CodecServer
	c.Addr = l.str("SYNCBRIDGE_CODEC_ADDR")
	if c.Addr == "off" {
		c.Addr = ""
	}
	// Bearer tokens (RFC 6750) have no ':', so "name:secret" is
	// unambiguous; the refusals never quote the line.
	for i, t := range strings.Split(l.secret("SYNCBRIDGE_CODEC_TOKEN", false), "\n") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		tok := CodecToken{Secret: t}
		if name, secret, named := strings.Cut(t, ":"); named {
			if !tokenName.MatchString(name) || secret == "" {
				l.fail("SYNCBRIDGE_CODEC_TOKEN", "line "+strconv.Itoa(i+1)+": want name:token with a name of 1-64 A-Z a-z 0-9 . _ -, or a bare token")
				continue
			}
			tok = CodecToken{Name: name, Secret: secret}
		} else {
			tok.Name = codecTokenName(t)
		}
		for _, o := range c.Tokens {
			if o.Name == tok.Name {
				l.fail("SYNCBRIDGE_CODEC_TOKEN", "names "+tok.Name+" twice")
			}
		}
		c.Tokens = append(c.Tokens, tok)
	}
	c.OIDC = l.codecOIDC()
	c.UIOrigin = strings.TrimRight(l.str("SYNCBRIDGE_CODEC_UI_ORIGIN"), "/")
	if c.UIOrigin != "" {
		u, err := url.Parse(c.UIOrigin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			l.fail("SYNCBRIDGE_CODEC_UI_ORIGIN", "must be an origin like https://ui.example.com or http://127.0.0.1:8233 (scheme, host, optional port; no path)")
		}
	}
	c.LoopbackPublished = l.boolean("SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED")
	switch mode := l.str("SYNCBRIDGE_CODEC_AUTH"); mode {
	case "token":
	case "ui-origin":
		c.TrustUIOrigin = true
		if c.UIOrigin == "" {
			l.fail("SYNCBRIDGE_CODEC_AUTH", "ui-origin needs SYNCBRIDGE_CODEC_UI_ORIGIN")
		}
	default:
		l.fail("SYNCBRIDGE_CODEC_AUTH", "must be token or ui-origin, got "+mode)
	}
	if c.Addr == "" {
		return c
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		l.fail("SYNCBRIDGE_CODEC_ADDR", "must be host:port or off")
	}
	if c.TrustUIOrigin && !c.LoopbackPublished && (err != nil || !isLoopback(host)) {
		l.fail("SYNCBRIDGE_CODEC_AUTH", "ui-origin needs a loopback SYNCBRIDGE_CODEC_ADDR (127.0.0.1:PORT): an Origin header is a claim any program that reaches "+c.Addr+" can forge; use tokens or SYNCBRIDGE_CODEC_OIDC_ISSUER there")
	}
	if len(c.Tokens) == 0 && c.OIDC.Issuer == "" {
		l.fail("SYNCBRIDGE_CODEC_TOKEN", "is required when SYNCBRIDGE_CODEC_ADDR is set (or SYNCBRIDGE_CODEC_TOKEN_FILE, or SYNCBRIDGE_CODEC_OIDC_ISSUER): the endpoint decrypts patient data")
	}
	if l.getenv("SYNCBRIDGE_PAYLOAD_KEY") == "" && l.getenv("SYNCBRIDGE_PAYLOAD_KEY_FILE") == "" {
		l.fail("SYNCBRIDGE_CODEC_ADDR", "needs SYNCBRIDGE_PAYLOAD_KEY: there is nothing to decode without it")
	}
	return c
}

func (l *loader) codecOIDC() CodecOIDC {
	o := CodecOIDC{
		Issuer:      l.str("SYNCBRIDGE_CODEC_OIDC_ISSUER"),
		JWKSURL:     l.str("SYNCBRIDGE_CODEC_OIDC_JWKS_URL"),
		Audience:    l.str("SYNCBRIDGE_CODEC_OIDC_AUDIENCE"),
		GroupsClaim: l.str("SYNCBRIDGE_CODEC_OIDC_GROUPS_CLAIM"),
	}
	for _, g := range strings.Split(l.str("SYNCBRIDGE_CODEC_OIDC_GROUPS"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			o.Groups = append(o.Groups, g)
		}
	}
	if o.Issuer == "" {
		for _, n := range []string{"SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "SYNCBRIDGE_CODEC_OIDC_GROUPS"} {
			if strings.TrimSpace(l.getenv(n)) != "" {
				l.fail(n, "is set but SYNCBRIDGE_CODEC_OIDC_ISSUER is not: access tokens stay off without an issuer")
			}
		}
		return o
	}
	// Keys fetched over plain HTTP could be swapped in transit, and with
	// them anyone could mint a valid token; loopback is for tests and a
	// local identity provider.
	for _, v := range []struct{ name, val string }{{"SYNCBRIDGE_CODEC_OIDC_ISSUER", o.Issuer}, {"SYNCBRIDGE_CODEC_OIDC_JWKS_URL", o.JWKSURL}} {
		u, err := url.Parse(v.val)
		switch {
		case v.val == "":
			l.fail(v.name, "is required with SYNCBRIDGE_CODEC_OIDC_ISSUER (the issuer's jwks_uri, from its /.well-known/openid-configuration)")
		case err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))):
			l.fail(v.name, "must be an https:// URL (http:// only on loopback)")
		}
	}
	if o.Audience == "" {
		l.fail("SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "is required with SYNCBRIDGE_CODEC_OIDC_ISSUER: a token issued for another application must not decode")
	}
	if len(o.Groups) == 0 {
		l.fail("SYNCBRIDGE_CODEC_OIDC_GROUPS", "is required with SYNCBRIDGE_CODEC_OIDC_ISSUER: not everyone who can sign in may read patient data")
	}
	return o
}
