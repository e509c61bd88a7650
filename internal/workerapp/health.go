package workerapp

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/config"
)

// Dependency names as they appear in /readyz answers and logs.
const (
	DepTemporal = "temporal"
	DepDatabase = "database"
	DepMQ       = "mq"
	// DepDatabaseEnvironment fails while inserts meet environment errors
	// (rights, missing table, read-only): the database answers pings but
	// refuses the pipeline's writes.
	DepDatabaseEnvironment = "database_environment"
)

// maxCheckTimeout bounds one probe. A dependency slower than this is as
// good as down for a worker: its activities would time out too.
const maxCheckTimeout = 5 * time.Second

// Check probes one dependency. Run must honour ctx's deadline.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// HealthOptions configure a Health.
type HealthOptions struct {
	// Interval between check rounds; default 5s.
	Interval time.Duration
	// Timeout of one check; default min(Interval, 5s), at least 1s.
	Timeout time.Duration
	// Secrets are blanked out of error texts before they are logged or
	// served. Errors of the checks below carry addresses, not credentials,
	// but a driver's message is not ours to trust.
	Secrets []string
	Logger  *slog.Logger
	Checks  []Check
	// OnRound, if set, receives the readiness after every round (the
	// worker exports it as the syncbridge_worker_ready gauge).
	OnRound func(Readiness)
}

// Health answers /healthz and /readyz. Liveness is the process answering
// at all; readiness is the last round of dependency checks, run in the
// background so a probe never waits on (or multiplies load on) Temporal,
// the database or the broker.
type Health struct {
	o   HealthOptions
	now func() time.Time

	mu      sync.Mutex
	results map[string]checkResult
	ready   bool // for logging transitions only
}

type checkResult struct {
	err string // "" = ok
	at  time.Time
	dur time.Duration
}

// NewHealth returns a Health that knows no result yet (not ready).
func NewHealth(o HealthOptions) *Health {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = min(max(o.Interval, time.Second), maxCheckTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Health{o: o, now: time.Now, results: map[string]checkResult{}}
}

// Start runs a round at once and then every Interval until ctx ends or
// stop is called; stop waits for the loop to exit.
func (h *Health) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(h.o.Interval)
		defer t.Stop()
		for {
			h.CheckNow(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// CheckNow runs every check concurrently and records the results.
func (h *Health) CheckNow(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range h.o.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
			defer cancel()
			start := h.now()
			err := c.Run(cctx)
			if ctx.Err() != nil {
				return // shutting down: not the dependency's fault
			}
			r := checkResult{at: h.now(), dur: h.now().Sub(start)}
			if err != nil {
				r.err = h.redact(err.Error())
			}
			h.mu.Lock()
			h.results[c.Name] = r
			h.mu.Unlock()
		})
	}
	wg.Wait()
	h.logTransition()
	if h.o.OnRound != nil && ctx.Err() == nil {
		h.o.OnRound(h.Readiness())
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (h *Health) redact(s string) string {
	for _, secret := range h.o.Secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// DependencyStatus is one dependency in a /readyz answer.
type DependencyStatus struct {
	OK bool `json:"ok"`
	// Error is the last failure, or "not checked yet" / "stale".
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	LatencyMS int64     `json:"latencyMs"`
}

// Readiness is the /readyz body.
type Readiness struct {
	Ready        bool                        `json:"ready"`
	Failing      []string                    `json:"failing,omitempty"`
	Dependencies map[string]DependencyStatus `json:"dependencies"`
}

// Readiness reports the latest results. A result older than two intervals
// plus a timeout counts as failing: the checker itself is stuck.
func (h *Health) Readiness() Readiness {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	staleAfter := 2*h.o.Interval + h.o.Timeout
	out := Readiness{Ready: true, Dependencies: map[string]DependencyStatus{}}
	for _, c := range h.o.Checks {
		r, ok := h.results[c.Name]
		s := DependencyStatus{CheckedAt: r.at, LatencyMS: r.dur.Milliseconds()}
		switch {
		case !ok:
			s.Error = "not checked yet"
		case r.err != "":
			s.Error = r.err
		case now.Sub(r.at) > staleAfter:
			s.Error = fmt.Sprintf("stale: last check %s ago", now.Sub(r.at).Round(time.Millisecond))
		default:
			s.OK = true
		}
		if !s.OK {
			out.Ready = false
			out.Failing = append(out.Failing, c.Name)
		}
		out.Dependencies[c.Name] = s
	}
	sort.Strings(out.Failing)
	return out
}

func (h *Health) logTransition() {
	r := h.Readiness()
	h.mu.Lock()
	changed := r.Ready != h.ready
	h.ready = r.Ready
	h.mu.Unlock()
	if !changed {
		return
	}
	if r.Ready {
		h.o.Logger.Info("ready: Temporal, database and broker reachable")
		return
	}
	for _, name := range r.Failing {
		h.o.Logger.Warn("not ready: dependency check failing", "dependency", name, "error", r.Dependencies[name].Error)
	}
}

// Register adds /healthz and /readyz to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealthJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := h.Readiness()
		status := http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
		}
		writeHealthJSON(w, status, rd)
	})
}

func writeHealthJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // plain structs only; cannot happen
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// dependencyChecks are the worker's readiness checks: the Temporal
// frontend's gRPC health, a database ping, and an HTTP round trip to the
// broker endpoint.
func dependencyChecks(cfg config.Config, db *sql.DB, tc client.Client, hc *http.Client) []Check {
	dbAddr := "database"
	if mc, err := mysql.ParseDSN(cfg.DB.DSN); err == nil {
		dbAddr = mc.Addr
	}
	return []Check{
		{Name: DepTemporal, Run: func(ctx context.Context) error {
			if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
				return fmt.Errorf("health check of %s: %w", cfg.Temporal.Address, err)
			}
			return nil
		}},
		{Name: DepDatabase, Run: func(ctx context.Context) error {
			if err := db.PingContext(ctx); err != nil {
				return fmt.Errorf("ping %s: %w", dbAddr, err)
			}
			return nil
		}},
		{Name: DepMQ, Run: func(ctx context.Context) error { return probeHTTP(ctx, hc, cfg.MQ.Endpoint) }},
	}
}

// probeHTTP proves the broker endpoint answers HTTP. Any answer below 500
// will do: the API needs signed requests, and a signed one could consume
// messages, so an unsigned GET that the broker rejects with 4xx is the
// cheapest request that shows DNS, TCP, TLS and the HTTP front all work.
func probeHTTP(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 500 {
		return fmt.Errorf("broker endpoint answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// probeTransport opens a fresh connection for every probe: reusing an
// idle keep-alive connection the broker's front has just closed would fail
// a healthy check, and a new connection is what proves reachability.
func probeTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return t
}

// newWorkerHealth builds the Health that Run serves.
func newWorkerHealth(cfg config.Config, db *sql.DB, tc client.Client, log *slog.Logger, alarm *activities.DBAlarm) *Health {
	secrets := []string{cfg.MQ.SecretKey, cfg.Temporal.APIKey}
	if mc, err := mysql.ParseDSN(cfg.DB.DSN); err == nil {
		secrets = append(secrets, mc.Passwd)
	}
	return NewHealth(HealthOptions{
		Interval: cfg.HealthInterval,
		Secrets:  secrets,
		Logger:   log.With("component", "health"),
		Checks: append(dependencyChecks(cfg, db, tc, &http.Client{Transport: probeTransport()}),
			Check{Name: DepDatabaseEnvironment, Run: alarm.Check}),
	})
}
