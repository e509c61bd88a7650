package config

import (
	"net"
	"net/url"
	"strings"
)

// CodecServer configures the Temporal codec-server endpoint the worker
// serves, so the Web UI and `temporal --codec-endpoint` can show payloads
// decrypted to those allowed to see them.
type CodecServer struct {
	// Addr is the listen address; "" = not served.
	Addr string
	// Tokens are the accepted bearer tokens (several during a token
	// rotation). Never empty when Addr is set.
	Tokens []string // secret
	// UIOrigin is the only Origin granted CORS ("" = none): the browser
	// refuses codec answers to any other page.
	UIOrigin string
	// TrustUIOrigin also accepts requests without a token when their
	// Origin is UIOrigin. The Web UI can only send a token it got from its
	// own OIDC login (passAccessToken); without OIDC this is how a local
	// stack's UI decodes. An Origin header is a browser's claim, so this is
	// only for a codec port nobody else can reach.
	TrustUIOrigin bool
}

func (l *loader) codecServer() CodecServer {
	var c CodecServer
	c.Addr = l.str("SYNCBRIDGE_CODEC_ADDR")
	if c.Addr == "off" {
		c.Addr = ""
	}
	for _, t := range strings.Split(l.secret("SYNCBRIDGE_CODEC_TOKEN", false), "\n") {
		if t = strings.TrimSpace(t); t != "" {
			c.Tokens = append(c.Tokens, t)
		}
	}
	c.UIOrigin = strings.TrimRight(l.str("SYNCBRIDGE_CODEC_UI_ORIGIN"), "/")
	if c.UIOrigin != "" {
		u, err := url.Parse(c.UIOrigin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			l.fail("SYNCBRIDGE_CODEC_UI_ORIGIN", "must be an origin like https://ui.example.com or http://127.0.0.1:8233 (scheme, host, optional port; no path)")
		}
	}
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
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		l.fail("SYNCBRIDGE_CODEC_ADDR", "must be host:port or off")
	}
	if len(c.Tokens) == 0 {
		l.fail("SYNCBRIDGE_CODEC_TOKEN", "is required when SYNCBRIDGE_CODEC_ADDR is set (or SYNCBRIDGE_CODEC_TOKEN_FILE): the endpoint decrypts patient data")
	}
	if l.getenv("SYNCBRIDGE_PAYLOAD_KEY") == "" && l.getenv("SYNCBRIDGE_PAYLOAD_KEY_FILE") == "" {
		l.fail("SYNCBRIDGE_CODEC_ADDR", "needs SYNCBRIDGE_PAYLOAD_KEY: there is nothing to decode without it")
	}
	return c
}
