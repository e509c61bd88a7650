package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/syncbridge/syncbridge/internal/codecserver"
)

func runCodecServer(ctx context.Context, e *env, args []string) int {
	fs := newFlags("codec-server", "codec-server [--addr HOST:PORT]", `
Serves the Temporal codec-server protocol (POST /encode, /decode, also under
/{namespace}/) so the Web UI and 'temporal --codec-endpoint' show payloads
decrypted. It needs the payload keys (SYNCBRIDGE_PAYLOAD_KEY and
SYNCBRIDGE_PAYLOAD_OLD_KEYS) and a token (SYNCBRIDGE_CODEC_TOKEN_FILE);
SYNCBRIDGE_CODEC_UI_ORIGIN names the one browser origin granted CORS. The
worker can serve the same endpoint (SYNCBRIDGE_CODEC_ADDR); this command is
for running it apart from the workers. Runs until interrupted.`)
	addr := fs.String("addr", "", "listen address; default SYNCBRIDGE_CODEC_ADDR")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 0 {
		return usageError(e, fs, "no arguments expected")
	}
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	if *addr == "" {
		*addr = cfg.Codec.Addr
	}
	if *addr == "" {
		return e.fail("no listen address: set SYNCBRIDGE_CODEC_ADDR or --addr")
	}
	ring, err := cfg.Keyring()
	if err != nil {
		return e.fail("%v", err)
	}
	if ring == nil {
		return e.fail("SYNCBRIDGE_PAYLOAD_KEY is not set: there is nothing to decode")
	}
	if len(cfg.Codec.Tokens) == 0 {
		return e.fail("SYNCBRIDGE_CODEC_TOKEN (or _FILE) is required: the endpoint decrypts patient data")
	}
	log := e.logger(cfg)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return e.fail("codec server listener on %s: %v", *addr, err)
	}
	srv := &http.Server{
		Handler: codecserver.Handler(codecserver.Options{
			Keyring:          ring,
			DefaultNamespace: cfg.Temporal.Namespace,
			Tokens:           cfg.Codec.Tokens,
			UIOrigin:         cfg.Codec.UIOrigin,
			TrustUIOrigin:    cfg.Codec.TrustUIOrigin,
			Logger:           log,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	e.progress("codec server listening on http://%s (UI origin %q)", ln.Addr(), cfg.Codec.UIOrigin)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return exitOK
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return exitOK
		}
		return e.fail("codec server: %v", err)
	}
}
