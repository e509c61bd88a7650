package workerapp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// serve puts h on a test server and returns GET path's status and body.
func serve(t *testing.T, h *Health) func(path string) (int, string) {
	t.Helper()
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: content type %q", path, ct)
		}
		return resp.StatusCode, string(b)
	}
}

func TestReadinessNamesFailingDependencyWithoutSecrets(t *testing.T) {
	var dbDown atomic.Bool
	dbDown.Store(true)
	h := NewHealth(HealthOptions{
		Interval: time.Hour, // driven by hand
		Secrets:  []string{"hunter2-db-password"},
		Logger:   quietLogger(),
		Checks: []Check{
			{Name: DepTemporal, Run: func(context.Context) error { return nil }},
			{Name: DepDatabase, Run: func(context.Context) error {
				if dbDown.Load() {
					return errors.New("dial root:hunter2-db-password@tcp(db:3306): connection refused")
				}
				return nil
			}},
		},
	})
	get := serve(t, h)

	if code, body := get("/healthz"); code != http.StatusOK || !strings.Contains(body, "alive") {
		t.Fatalf("/healthz before any check: %d %s", code, body)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not checked yet") {
		t.Fatalf("/readyz before any check: %d %s", code, body)
	}

	h.CheckNow(context.Background())
	code, body = get("/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the database down: %d %s", code, body)
	}
	if !strings.Contains(body, `"failing":["database"]`) || !strings.Contains(body, "connection refused") {
		t.Fatalf("/readyz does not name the failing dependency and its error: %s", body)
	}
	if strings.Contains(body, "hunter2") || !strings.Contains(body, "[redacted]") {
		t.Fatalf("secret not redacted: %s", body)
	}
	if r := h.Readiness(); !r.Dependencies[DepTemporal].OK || r.Dependencies[DepDatabase].OK {
		t.Fatalf("per-dependency status wrong: %+v", r)
	}

	dbDown.Store(false)
	h.CheckNow(context.Background())
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz after recovery: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
}

func TestReadinessGoesStaleWhenChecksStop(t *testing.T) {
	h := NewHealth(HealthOptions{
		Interval: time.Second, Timeout: time.Second, Logger: quietLogger(),
		Checks: []Check{{Name: DepMQ, Run: func(context.Context) error { return nil }}},
	})
	now := time.Now()
	h.now = func() time.Time { return now }
	h.CheckNow(context.Background())
	if !h.Readiness().Ready {
		t.Fatalf("fresh ok result not ready: %+v", h.Readiness())
	}
	now = now.Add(2*time.Second + time.Second + time.Millisecond) // past 2 intervals + timeout
	r := h.Readiness()
	if r.Ready || !strings.HasPrefix(r.Dependencies[DepMQ].Error, "stale") {
		t.Fatalf("old result still counted: %+v", r)
	}
}

func TestHungCheckTimesOut(t *testing.T) {
	h := NewHealth(HealthOptions{
		Interval: time.Hour, Timeout: 150 * time.Millisecond, Logger: quietLogger(),
		Checks: []Check{{Name: DepTemporal, Run: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}},
	})
	start := time.Now()
	h.CheckNow(context.Background())
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("hung check held the round for %s", took)
	}
	if r := h.Readiness(); r.Ready || !strings.Contains(r.Dependencies[DepTemporal].Error, "deadline") {
		t.Fatalf("hung check: %+v", r)
	}
}

func TestStartRunsRoundsUntilStopped(t *testing.T) {
	var n atomic.Int32
	h := NewHealth(HealthOptions{
		Interval: 20 * time.Millisecond, Logger: quietLogger(),
		Checks: []Check{{Name: DepMQ, Run: func(context.Context) error { n.Add(1); return nil }}},
	})
	stop := h.Start(context.Background())
	testwait.Until(t, 10*time.Second, "three rounds", func() bool { return n.Load() >= 3 })
	stop()
	after := n.Load()
	time.Sleep(100 * time.Millisecond)
	if n.Load() != after {
		t.Fatal("checks still running after stop")
	}
}

func TestProbeHTTP(t *testing.T) {
	status := http.StatusNotFound
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	ctx := context.Background()
	if err := probeHTTP(ctx, srv.Client(), srv.URL); err != nil {
		t.Fatalf("a 4xx answer proves reachability: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probeHTTP(ctx, srv.Client(), srv.URL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("5xx must fail: %v", err)
	}
	srv.Close()
	if err := probeHTTP(ctx, srv.Client(), srv.URL); err == nil {
		t.Fatal("closed endpoint reported reachable")
	}
}

// The readiness proof: a real worker (workerapp.Run) with proxies
// in front of its database and broker. /readyz flips to 503 naming the
// dependency when a proxy is cut, and back to 200 when it is restored;
// /healthz stays 200 throughout.
func TestReadyzFlipsWhenDependencyCut(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "0", "SYNCBRIDGE_HEALTH_INTERVAL": "200ms"})

	dbCfg, err := mysql.ParseDSN(p.env.DSN)
	if err != nil {
		t.Fatal(err)
	}
	dbProxy, err := tcpproxy.Start(dbCfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dbProxy.Close() })
	dbCfg.Addr = dbProxy.Addr()
	p.vars["POLARDB_DSN"] = dbCfg.FormatDSN()

	mqProxy, err := tcpproxy.Start(strings.TrimPrefix(p.env.MQURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mqProxy.Close() })
	p.vars["ROCKETMQ_ENDPOINT"] = "http://" + mqProxy.Addr()

	w := p.worker(Options{})
	waitReadiness(t, w.metricsAddr, 30*time.Second, func(r Readiness) bool { return r.Ready })

	for _, c := range []struct {
		dep   string
		proxy *tcpproxy.Proxy
	}{{DepDatabase, dbProxy}, {DepMQ, mqProxy}} {
		c.proxy.Cut()
		r := waitReadiness(t, w.metricsAddr, 30*time.Second, func(r Readiness) bool { return !r.Ready })
		if len(r.Failing) != 1 || r.Failing[0] != c.dep {
			t.Fatalf("%s cut: failing %v, want only %s: %+v", c.dep, r.Failing, c.dep, r)
		}
		if strings.Contains(r.Dependencies[c.dep].Error, p.env.SecretKey) {
			t.Fatal("broker secret in /readyz")
		}
		t.Logf("%s cut: %s", c.dep, r.Dependencies[c.dep].Error)
		resp, err := http.Get("http://" + w.metricsAddr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz %d while %s is cut: liveness must not follow dependencies", resp.StatusCode, c.dep)
		}
		c.proxy.Restore()
		waitReadiness(t, w.metricsAddr, 30*time.Second, func(r Readiness) bool { return r.Ready })
	}
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
}
