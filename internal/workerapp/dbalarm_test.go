package workerapp

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/config"
)

// An environment error seen by an insert makes /readyz fail, naming the
// database environment, although the database answers pings.
func TestReadyzReportsDatabaseEnvironment(t *testing.T) {
	alarm := &activities.DBAlarm{}
	cfg := config.Config{HealthInterval: time.Second}
	h := newWorkerHealth(cfg, nil, nil, slog.Default(), alarm)
	// Only the alarm's check: the others need live dependencies.
	var kept []Check
	for _, c := range h.o.Checks {
		if c.Name == DepDatabaseEnvironment {
			kept = append(kept, c)
		}
	}
	if len(kept) != 1 {
		t.Fatalf("newWorkerHealth has no %s check", DepDatabaseEnvironment)
	}
	h.o.Checks = kept
	mux := http.NewServeMux()
	h.Register(mux)
	get := func() (int, string) {
		h.CheckNow(context.Background())
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("before any error: %d %s", code, body)
	}
	alarm.Raise(1142, time.Now())
	code, body := get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, DepDatabaseEnvironment) || !strings.Contains(body, "1142") {
		t.Fatalf("after 1142: %d %s", code, body)
	}
}
