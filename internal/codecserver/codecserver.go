// Package codecserver serves Temporal's remote codec protocol (POST
// /encode and /decode with {"payloads":[...]} in and out, also under
// /{namespace}/) so the Web UI and `temporal --codec-endpoint` show
// payloads that history holds encrypted. The protocol itself is the SDK's
// handler; this package adds what makes it safe to expose, because a
// decode endpoint is a decryption oracle for patient data: a bearer token,
// CORS for the one UI origin, a request size cap, and logs that never
// carry a payload.
package codecserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/codec"
)

// DefaultMaxBodyBytes caps a request. The Web UI sends one event's
// payloads per call and Temporal refuses payloads above 2 MiB by default,
// so 4 MiB fits every real request and bounds what one call can make the
// server buffer.
const DefaultMaxBodyBytes = 4 << 20

// Options configure Handler. Keyring and at least one token (or
// TrustUIOrigin) are required.
type Options struct {
	Keyring *codec.Keyring
	// DefaultNamespace is used when neither the path nor the X-Namespace
	// header names one (the CLI's plain --codec-endpoint calls).
	DefaultNamespace string
	// Tokens are accepted as "Authorization: Bearer <token>".
	Tokens []string
	// UIOrigin is the only Origin granted CORS; "" grants none.
	UIOrigin string
	// TrustUIOrigin accepts requests whose Origin is UIOrigin without a
	// token (see config.CodecServer).
	TrustUIOrigin bool
	// MaxBodyBytes caps the request body; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger gets one line per refused request, never a payload; nil
	// discards.
	Logger *slog.Logger
}

type handler struct {
	o      Options
	tokens [][32]byte
}

// Handler returns the codec endpoint. It panics on a nil keyring or when
// no way to authenticate is configured: an open decode endpoint must not
// come from a wiring mistake.
func Handler(o Options) http.Handler {
	if o.Keyring == nil {
		panic("codecserver: nil Keyring")
	}
	if len(o.Tokens) == 0 && !o.TrustUIOrigin {
		panic("codecserver: no token and no trusted UI origin")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{o: o}
	// Compared as hashes, so the comparison time says nothing about a
	// token's length or prefix.
	for _, t := range o.Tokens {
		h.tokens = append(h.tokens, sha256.Sum256([]byte(t)))
	}
	return h
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
	if !h.authorized(r, granted) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="syncbridge codec"`)
		h.refuse(w, r, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	if ns == "" {
		ns = r.Header.Get("X-Namespace")
	}
	if ns == "" {
		ns = h.o.DefaultNamespace
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		h.refuse(w, r, http.StatusBadRequest, "cannot read request body")
		return
	}
	// The SDK handler only looks at the path's suffix; it gets the
	// namespace's codec, so the namespace bound into each ciphertext is
	// the one the caller asked for.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + op
	r2.Body = io.NopCloser(bytes.NewReader(body))
	sw := &statusWriter{ResponseWriter: w}
	converter.NewPayloadCodecHTTPHandler(h.o.Keyring.Codec(ns)).ServeHTTP(sw, r2)
	if sw.status >= 400 {
		// The SDK answered with the codec's error (key ID, namespace),
		// which holds no payload; the log gets even less.
		h.o.Logger.Warn("codec request failed", "op", op, "namespace", ns, "status", sw.status)
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

func (h *handler) authorized(r *http.Request, fromUI bool) bool {
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		sum := sha256.Sum256([]byte(strings.TrimSpace(auth)))
		match := 0
		for _, t := range h.tokens {
			match |= subtle.ConstantTimeCompare(sum[:], t[:])
		}
		if match == 1 {
			return true
		}
	}
	return h.o.TrustUIOrigin && fromUI
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.o.Logger.Info("codec request refused", "method", r.Method, "path", r.URL.Path, "status", status, "reason", msg)
	http.Error(w, msg, status)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
