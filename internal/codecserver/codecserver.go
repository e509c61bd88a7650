// Package codecserver serves Temporal's remote codec protocol (POST
// /encode and /decode with {"payloads":[...]} in and out, also under
// /{namespace}/) so the Web UI and `temporal --codec-endpoint` show
// payloads that history holds encrypted. A decode endpoint is a
// decryption oracle for patient data, so this package is mostly what makes
// it safe to expose: every call names who makes it (a service token, a
// person's verified access token, or, on a loopback-only listener, the
// UI's origin), every /encode and /decode call leaves one audit line and a
// count, CORS goes to the one UI origin, requests are capped, and nothing
// logged carries a payload or a token.
package codecserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/uber-go/tally/v4"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/syncbridge/syncbridge/internal/codec"
)

// DefaultMaxBodyBytes caps a request. The Web UI sends one event's
// payloads per call and Temporal refuses payloads above 2 MiB by default,
// so 4 MiB fits every real request and bounds what one call can make the
// server buffer.
const DefaultMaxBodyBytes = 4 << 20

// Token is a service token (the CLI, a proxy): the name is what the audit
// trail records, the secret is what the caller sends.
type Token struct {
	Name   string
	Secret string
}

// Options configure Handler. Keyring and at least one way in (a token,
// AccessTokens or TrustUIOrigin) are required.
type Options struct {
	Keyring *codec.Keyring
	// DefaultNamespace is used when neither the path nor the X-Namespace
	// header names one (the CLI's plain --codec-endpoint calls).
	DefaultNamespace string
	// Tokens are accepted as "Authorization: Bearer <secret>".
	Tokens []Token
	// AccessTokens, when set, also accepts a person's access token as
	// "Authorization: Bearer <JWT>" (the Web UI's "pass the user access
	// token"); nil accepts none.
	AccessTokens *AccessTokens
	// UIOrigin is the only Origin granted CORS; "" grants none.
	UIOrigin string
	// TrustUIOrigin accepts requests whose Origin is UIOrigin without a
	// token (see config.CodecServer). Listen refuses it on an address
	// other hosts or containers reach.
	TrustUIOrigin bool
	// LoopbackPublished tells Listen that a non-loopback listen address is
	// reachable only through a port published on the host's loopback (a
	// container alone on its network), so TrustUIOrigin is still sound.
	LoopbackPublished bool
	// MaxBodyBytes caps the request body; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger gets the audit trail (one line per /encode or /decode call,
	// written whatever the logger's level) and one line per other refused
	// request, never a payload; nil discards. Point it where audit records
	// are kept.
	Logger *slog.Logger
	// Metrics counts calls (codec_requests by op, auth and outcome) and
	// payloads (codec_payloads by op); nil counts nowhere.
	Metrics tally.Scope
}

type handler struct {
	o      Options
	audits *slog.Logger
	tokens [][32]byte
}

// Handler returns the codec endpoint. It panics on a nil keyring or when
// no way to authenticate is configured: an open decode endpoint must not
// come from a wiring mistake.
func Handler(o Options) http.Handler {
	if o.Keyring == nil {
		panic("codecserver: nil Keyring")
	}
	if len(o.Tokens) == 0 && o.AccessTokens == nil && !o.TrustUIOrigin {
		panic("codecserver: no token, no access-token issuer and no trusted UI origin")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = tally.NoopScope
	}
	h := &handler{o: o, audits: slog.New(alwaysEnabled{o.Logger.Handler()})}
	// Compared as hashes, so the comparison time says nothing about a
	// token's length or prefix.
	for _, t := range o.Tokens {
		if t.Name == "" || t.Secret == "" {
			panic("codecserver: token without name or secret")
		}
		h.tokens = append(h.tokens, sha256.Sum256([]byte(t.Secret)))
	}
	return h
}

// Listen opens the codec listener on addr. With TrustUIOrigin it refuses,
// before serving anything, an address that is not loopback (unless
// LoopbackPublished): an Origin header is a claim any program can send,
// so trusting it is only sound where nobody but the operator's own
// browser can connect. The check is on the bound address, so a hostname
// that resolves beyond loopback is caught too.
func Listen(addr string, o Options) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.TrustUIOrigin && !o.LoopbackPublished {
		if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
			_ = ln.Close()
			return nil, fmt.Errorf("codec server: ui-origin trust on %s, which other hosts or containers can reach: listen on 127.0.0.1 (or ::1), or use tokens", ln.Addr())
		}
	}
	return ln, nil
}

// call is what the audit trail records of one /encode or /decode call.
type call struct {
	op, namespace string
	who, auth     string
	outcome       string // ok, denied, failed
	reason        string
	status        int
	payloads      int
	keyIDs        []string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	granted := origin != "" && h.o.UIOrigin != "" && origin == h.o.UIOrigin
	if granted {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	w.Header().Add("Vary", "Origin")
	w.Header().Set("Cache-Control", "no-store")

	if r.Method == http.MethodOptions {
		// Preflight: browsers send no credentials here, so it is answered
		// without auth, and grants only the UI origin.
		if !granted {
			h.refuse(w, r, http.StatusForbidden, "origin not allowed")
			return
		}
		w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		h.refuse(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	ns, op, ok := route(r.URL.Path)
	if !ok {
		h.refuse(w, r, http.StatusNotFound, "not found")
		return
	}
	if ns == "" {
		ns = r.Header.Get("X-Namespace")
	}
	if ns == "" {
		ns = h.o.DefaultNamespace
	}
	c := &call{op: op, namespace: ns}
	// Exactly one audit line per call, whichever way it ends.
	defer h.audit(r, c)
	fail := func(status int, outcome, reason string) {
		c.status, c.outcome, c.reason = status, outcome, reason
		http.Error(w, reason, status)
	}

	if !h.authenticate(r, granted, c) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="syncbridge codec"`)
		fail(http.StatusUnauthorized, "denied", c.reason)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, "failed", "request body too large")
			return
		}
		fail(http.StatusBadRequest, "failed", "cannot read request body")
		return
	}
	// The protocol is the SDK's remote codec (converter.RemotePayloadCodec
	// is its client): protobuf JSON of Payloads in and out. Parsed here,
	// once, rather than in the SDK's handler, so the audit line can count
	// the payloads and name their keys.
	var in commonpb.Payloads
	if err := protojson.Unmarshal(body, &in); err != nil {
		fail(http.StatusBadRequest, "failed", "request is not a JSON Payloads message")
		return
	}
	c.payloads = len(in.Payloads)
	// The namespace's codec, so the namespace bound into each ciphertext
	// is the one the caller asked for.
	nsCodec := h.o.Keyring.Codec(ns)
	var out []*commonpb.Payload
	if op == "decode" {
		c.keyIDs = h.keyIDs(in.Payloads)
		out, err = nsCodec.Decode(in.Payloads)
	} else {
		out, err = nsCodec.Encode(in.Payloads)
		if err == nil {
			c.keyIDs = h.keyIDs(out)
		}
	}
	if err != nil {
		// The codec's errors name a key ID or the namespace, never a
		// payload.
		fail(http.StatusBadRequest, "failed", err.Error())
		return
	}
	resp, err := protojson.Marshal(&commonpb.Payloads{Payloads: out})
	if err != nil {
		fail(http.StatusInternalServerError, "failed", "cannot encode the response")
		return
	}
	c.status, c.outcome = http.StatusOK, "ok"
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(resp)
}

// keyIDs are the distinct key IDs the payloads name, sorted. An ID the
// ring does not hold is caller-supplied text: it is recorded as "unknown",
// so the audit line carries only the operator's own key names.
func (h *handler) keyIDs(ps []*commonpb.Payload) []string {
	var ids []string
	for _, p := range ps {
		id := codec.KeyIDOf(p)
		switch {
		case id == "":
			continue
		case !h.o.Keyring.Has(id):
			id = "unknown"
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// audit writes the call's one line and counts it. Who is a token's name,
// a verified subject, or "ui-origin" (a browser on the loopback-only
// listener, no person named); never the token, never a payload.
func (h *handler) audit(r *http.Request, c *call) {
	if c.outcome == "" {
		// A handler path that forgot to decide still leaves its record.
		c.outcome, c.status = "failed", http.StatusInternalServerError
	}
	auth := c.auth
	if auth == "" {
		auth = "none"
	}
	attrs := []any{
		"op", c.op, "who", c.who, "auth", auth, "namespace", c.namespace,
		"payloads", c.payloads, "keyIDs", c.keyIDs, "outcome", c.outcome, "status", c.status,
		"remote", r.RemoteAddr,
	}
	if c.reason != "" {
		attrs = append(attrs, "reason", c.reason)
	}
	h.audits.Info("codec audit", attrs...)
	h.o.Metrics.Tagged(map[string]string{"op": c.op, "auth": auth, "outcome": c.outcome}).Counter("codec_requests").Inc(1)
	if c.outcome == "ok" {
		h.o.Metrics.Tagged(map[string]string{"op": c.op}).Counter("codec_payloads").Inc(int64(c.payloads))
	}
}

// route splits "/encode", "/decode", "/{ns}/encode" and "/{ns}/decode".
func route(path string) (ns, op string, ok bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch len(parts) {
	case 1:
		op = parts[0]
	case 2:
		ns, op = parts[0], parts[1]
		if ns == "" {
			return "", "", false
		}
	default:
		return "", "", false
	}
	return ns, op, op == "encode" || op == "decode"
}

// authenticate finds who calls: a service token, then a person's access
// token, then (in ui-origin mode) the UI's origin. It fills c.who and
// c.auth, or c.reason when nobody is let in.
func (h *handler) authenticate(r *http.Request, fromUI bool, c *call) bool {
	c.reason = "missing bearer token"
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		bearer = strings.TrimSpace(bearer)
		sum := sha256.Sum256([]byte(bearer))
		match := -1
		for i, t := range h.tokens {
			if subtle.ConstantTimeCompare(sum[:], t[:]) == 1 {
				match = i
			}
		}
		if match >= 0 {
			c.who, c.auth, c.reason = "token:"+h.o.Tokens[match].Name, "token", ""
			return true
		}
		c.reason = "wrong bearer token"
		if h.o.AccessTokens != nil && strings.Count(bearer, ".") == 2 {
			sub, err := h.o.AccessTokens.Verify(r.Context(), bearer)
			if err == nil {
				c.who, c.auth, c.reason = sub, "oidc", ""
				return true
			}
			// The subject is set only when the token itself verified (a
			// person outside the allowed groups).
			c.who, c.auth, c.reason = sub, "oidc", refusal(err)
		}
	}
	if h.o.TrustUIOrigin && fromUI {
		c.who, c.auth, c.reason = "ui-origin", "ui-origin", ""
		return true
	}
	return false
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.o.Logger.Info("codec request refused", "method", r.Method, "path", r.URL.Path, "status", status, "reason", msg)
	http.Error(w, msg, status)
}

// alwaysEnabled writes every record its handler is given: a log level
// set to warn for a quiet worker must not switch the audit trail off. The
// standard library's handlers check the level only in Enabled.
type alwaysEnabled struct{ slog.Handler }

func (alwaysEnabled) Enabled(context.Context, slog.Level) bool { return true }

func (a alwaysEnabled) WithAttrs(attrs []slog.Attr) slog.Handler {
	return alwaysEnabled{a.Handler.WithAttrs(attrs)}
}

func (a alwaysEnabled) WithGroup(name string) slog.Handler {
	return alwaysEnabled{a.Handler.WithGroup(name)}
}
