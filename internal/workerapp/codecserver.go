package workerapp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/syncbridge/syncbridge/internal/codecserver"
	"github.com/syncbridge/syncbridge/internal/config"
)

// serveCodec starts the codec endpoint on its own listener when configured
// and returns its address ("" when off) and a stop function. Its own
// listener, not the metrics one: /metrics is scraped from inside the
// cluster without auth, the codec endpoint is reached by operators'
// browsers and must not share that exposure.
//
// Its audit lines go to the worker's log and its counts to the worker's
// metrics (syncbridge_codec_requests, syncbridge_codec_payloads).
func serveCodec(cfg config.Config, log *slog.Logger, metrics tally.Scope) (string, func(), error) {
	if cfg.Codec.Addr == "" {
		return "", func() {}, nil
	}
	ring, err := cfg.Keyring()
	if err != nil {
		return "", nil, err
	}
	if ring == nil {
		return "", nil, errors.New("codec server needs SYNCBRIDGE_PAYLOAD_KEY")
	}
	o, err := codecserver.FromConfig(cfg.Codec, ring, cfg.Temporal.Namespace, log.With("component", "codec-server"), metrics)
	if err != nil {
		return "", nil, err
	}
	ln, err := codecserver.Listen(cfg.Codec.Addr, o)
	if err != nil {
		return "", nil, fmt.Errorf("codec listener on %s (SYNCBRIDGE_CODEC_ADDR): %w", cfg.Codec.Addr, err)
	}
	srv := &http.Server{
		Handler:           codecserver.Handler(o),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("codec server stopped", "error", err)
		}
	}()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
