package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/syncbridge/syncbridge/internal/codecserver"
	"github.com/syncbridge/syncbridge/internal/metrics"
)

func codecServerCommand() *command {
	return &command{
		name:     "codec-server",
		summary:  "serve the codec endpoint the Web UI and temporal CLI decrypt payloads through",
		synopsis: "codec-server [--addr HOST:PORT] [--metrics-addr HOST:PORT]",
		about: `
Serves the Temporal codec-server protocol (POST /encode, /decode, also under
/{namespace}/) so the Web UI and 'temporal --codec-endpoint' show payloads
decrypted. It needs the payload keys (SYNCBRIDGE_PAYLOAD_KEY and
SYNCBRIDGE_PAYLOAD_OLD_KEYS) and a way in: service tokens
(SYNCBRIDGE_CODEC_TOKEN_FILE), people's access tokens passed by the Web UI
(SYNCBRIDGE_CODEC_OIDC_*), or, on a loopback listener only, the UI's origin
(SYNCBRIDGE_CODEC_AUTH=ui-origin). SYNCBRIDGE_CODEC_UI_ORIGIN names the one
browser origin granted CORS. Every /encode and /decode call is written to
stderr as one "codec audit" line (who, namespace, how many payloads, which
key IDs; never a payload), whatever SYNCBRIDGE_LOG_LEVEL says. The worker can
serve the same endpoint (SYNCBRIDGE_CODEC_ADDR); this command is for running
it apart from the workers. Runs until interrupted.`,
		setup: func(fs *flags) runFunc {
			addr := fs.String("addr", "", "listen address; default SYNCBRIDGE_CODEC_ADDR")
			metricsAddr := fs.String("metrics-addr", "", "serve /metrics (codec_requests, codec_payloads) on this address; default none")
			return func(ctx context.Context, e *env, _ []string) error { return serveCodec(ctx, e, *addr, *metricsAddr) }
		},
	}
}

func serveCodec(ctx context.Context, e *env, addr, metricsAddr string) error {
	cfg := e.cfg
	if addr == "" {
		addr = cfg.Codec.Addr
	}
	if addr == "" {
		return errors.New("no listen address: set SYNCBRIDGE_CODEC_ADDR or --addr")
	}
	ring, err := cfg.Keyring()
	if err != nil {
		return err
	}
	if ring == nil {
		return errors.New("SYNCBRIDGE_PAYLOAD_KEY is not set: there is nothing to decode")
	}
	if len(cfg.Codec.Tokens) == 0 && cfg.Codec.OIDC.Issuer == "" {
		return errors.New("SYNCBRIDGE_CODEC_TOKEN (or _FILE) or SYNCBRIDGE_CODEC_OIDC_ISSUER is required: the endpoint decrypts patient data")
	}
	reg := metrics.New()
	defer reg.Close()
	o, err := codecserver.FromConfig(cfg.Codec, ring, cfg.Temporal.Namespace, e.log, reg.Root.SubScope("syncbridge"))
	if err != nil {
		return err
	}
	// codecserver.Listen refuses ui-origin trust on a reachable address,
	// including one given with --addr, which the configuration never saw.
	ln, err := codecserver.Listen(addr, o)
	if err != nil {
		return fmt.Errorf("codec server listener on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           codecserver.Handler(o),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	if metricsAddr != "" {
		mln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("metrics listener on %s: %w", metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", reg.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
	}
	e.progress("codec server listening on http://%s (UI origin %q)", ln.Addr(), cfg.Codec.UIOrigin)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("codec server: %w", err)
	}
}
