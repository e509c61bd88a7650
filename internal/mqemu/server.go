package mqemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownGrace bounds Server.Close: long polls end at once, so only a
// slow publish or ack can hold it up.
const shutdownGrace = 5 * time.Second

// Server runs an Emulator on a TCP address.
type Server struct {
	// URL is the endpoint to give the SDKs, e.g. http://127.0.0.1:38211.
	URL string
	// Addr is the address actually listened on (useful with port 0).
	Addr string

	srv       *http.Server
	release   context.CancelFunc // ends the requests' base context: long polls answer at once
	done      chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error
}

// Serve listens on addr (such as "127.0.0.1:0") and serves e in a
// goroutine until Close. The caller keeps ownership of e.
func Serve(addr string, e *Emulator) (*Server, error) {
	if e == nil {
		return nil, errors.New("mqemu: Serve: nil Emulator")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqemu: listen %s: %w", addr, err)
	}
	base, release := context.WithCancel(context.Background())
	s := &Server{
		URL:     "http://" + ln.Addr().String(),
		Addr:    ln.Addr().String(),
		release: release,
		done:    make(chan struct{}),
		srv: &http.Server{
			Handler:           e,
			BaseContext:       func(net.Listener) context.Context { return base },
			ReadHeaderTimeout: 10 * time.Second,
			// Longer than the clients' idle timeouts (fasthttp 10 s, Node
			// keep-alive), so the server never closes a connection the
			// client is about to reuse for a non-retryable publish.
			IdleTimeout: 5 * time.Minute,
			ErrorLog:    slog.NewLogLogger(e.log.Handler(), slog.LevelWarn),
		},
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
		}
	}()
	e.log.Info("mqemu: serving", "url", s.URL, "stats", s.StatsURL())
	return s, nil
}

// StatsURL is the JSON introspection endpoint for operators
// (GET /_emulator/stats).
func (s *Server) StatsURL() string { return s.URL + "/_emulator/stats" }

// Close stops the server gracefully: pending long polls are answered
// MessageNotExist at once, in-flight requests finish (up to 5 s), then
// connections close. The Emulator is not closed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.srv == nil { // a literal Server{URL: ...}, never started
			return
		}
		s.release()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		<-s.done
		s.closeErr = errors.Join(err, s.serveErr)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("mqemu: server close: %w", s.closeErr)
		}
	})
	return s.closeErr
}
