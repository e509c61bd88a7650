// Package metrics builds the tally scope shared by the Temporal SDK and the
// pipeline, reported as Prometheus text on /metrics, and names the
// pipeline's own metrics in one place.
//
// Label values are pipeline states and reason codes only, never message
// keys or patient fields: keys are unbounded (cardinality) and patient data
// must not leave the database.
package metrics

import (
	"io"
	"net/http"
	"strconv"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Registry owns the root scope and its HTTP handler.
type Registry struct {
	// Root is for the Temporal SDK (client.Options.MetricsHandler).
	Root tally.Scope
	// Pipeline is the syncbridge_* namespace.
	Pipeline *Pipeline
	handler  http.Handler
	closer   io.Closer
}

// New creates a registry with its own Prometheus registry, so several
// workers in one process (tests) do not collide on the global one.
func New() *Registry {
	reg := prom.NewRegistry()
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       reg,
		DefaultTimerType: tallyprom.HistogramTimerType,
	})
	root, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	root = sdktally.NewPrometheusNamingScope(root)
	return &Registry{
		Root:     root,
		Pipeline: NewPipeline(root.SubScope("syncbridge")),
		handler:  reporter.HTTPHandler(),
		closer:   closer,
	}
}

// Handler serves Prometheus text.
func (r *Registry) Handler() http.Handler { return r.handler }

// Close flushes and stops reporting.
func (r *Registry) Close() error { return r.closer.Close() }

// Pipeline holds the pipeline's metrics. A nil *Pipeline is not valid; use
// NewPipeline(tally.NoopScope) in tests that do not look at metrics.
type Pipeline struct {
	scope tally.Scope

	MessagesPolled   tally.Counter
	PollErrors       tally.Counter
	PollThrottled    tally.Counter
	WorkflowsStarted tally.Counter
	// Redeliveries handed to a running workflow by signal.
	SignalledRunning tally.Counter
	// ParkedForRun: keys whose messages waited for the key's running
	// record to close instead of being signalled to it (activities/park.go).
	ParkedForRun tally.Counter
	// DuplicatesByWorkflowID: the key's workflow had already completed.
	DuplicatesByWorkflowID tally.Counter
	InFlight               tally.Gauge
	InsertLatency          tally.Timer
	AckLatency             tally.Timer
	AckedHandles           tally.Counter
	// CommitBatchSize is how many inserts shared one transaction (group
	// commit); CommitLatency how long that transaction took.
	CommitBatchSize tally.Histogram
	CommitLatency   tally.Timer
	// ExpiredHandles: refused by the broker at ack time (expired or
	// superseded). The record is committed regardless.
	ExpiredHandles tally.Counter
	// InsertFailingRecords counts records whose insert has failed more
	// than InsertFailingAfter attempts, once per record (when it crosses
	// the line), whatever the error class: a rising count is records
	// stuck in retry, holding in-flight slots.
	InsertFailingRecords tally.Counter
	// WorkerReady is 1 while the worker's last readiness round found
	// Temporal, the database and the broker reachable, else 0. Alerting on
	// it (rather than on `up`) catches a worker that runs but cannot work.
	WorkerReady tally.Gauge
	// StuckRecords is the number of record workflows of the task queue
	// running longer than the stuck threshold, sampled from visibility.
	// Every worker of a fleet reports the same fleet-wide number: aggregate
	// with max(), not sum().
	StuckRecords tally.Gauge
	// Record notices (flood mode's conflicts and quarantines, announced in
	// the Web UI after their bulk commit; activities.Notices), by event:
	// started (a record run exists), swept (an overdue notice a sweep
	// took over, usually from a worker that died before starting it) and
	// deferred (the in-memory queue was full; the outbox keeps it for a
	// sweep). A rising swept or deferred count means notices reach the Web
	// UI late.
	NoticesStarted, NoticesSwept, NoticesDeferred tally.Counter
	// FloodGroupBatches is how many consume calls a flood group gathers
	// now (SYNCBRIDGE_FLOOD_BATCHES at most): it halves after a commit
	// slower than SYNCBRIDGE_FLOOD_SLOW_COMMIT and grows back by one per
	// fast commit, so a low value means the database is slow.
	FloodGroupBatches tally.Gauge
}

// InsertFailingAfter is the number of failed insert attempts after which a
// record counts in syncbridge_insert_failing_records. Ten attempts with
// the insert's retry policy is a few minutes: past any deadlock, failover
// or connection blip.
const InsertFailingAfter = 10

// NewPipeline names every pipeline metric under scope.
func NewPipeline(scope tally.Scope) *Pipeline {
	p := &Pipeline{
		scope:                  scope,
		MessagesPolled:         scope.Counter("messages_polled"),
		PollErrors:             scope.Counter("poll_errors"),
		PollThrottled:          scope.Counter("poll_throttled"),
		WorkflowsStarted:       scope.Counter("workflows_started"),
		SignalledRunning:       scope.Counter("redeliveries_signalled"),
		ParkedForRun:           scope.Counter("redeliveries_parked"),
		DuplicatesByWorkflowID: scope.Tagged(map[string]string{"by": "workflow_id"}).Counter("duplicates"),
		InFlight:               scope.Gauge("inflight_records"),
		InsertLatency:          scope.Timer("insert_latency"),
		AckLatency:             scope.Timer("ack_latency"),
		AckedHandles:           scope.Counter("acked_handles"),
		CommitBatchSize:        scope.Histogram("commit_batch_size", tally.ValueBuckets{1, 2, 4, 8, 16, 32, 64, 128}),
		CommitLatency:          scope.Timer("commit_latency"),
		ExpiredHandles:         scope.Counter("expired_handles"),
		InsertFailingRecords:   scope.Counter("insert_failing_records"),
		WorkerReady:            scope.Gauge("worker_ready"),
		StuckRecords:           scope.Gauge("stuck_records"),
		NoticesStarted:         scope.Tagged(map[string]string{"event": "started"}).Counter("record_notices"),
		NoticesSwept:           scope.Tagged(map[string]string{"event": "swept"}).Counter("record_notices"),
		NoticesDeferred:        scope.Tagged(map[string]string{"event": "deferred"}).Counter("record_notices"),
		FloodGroupBatches:      scope.Gauge("flood_group_batches"),
	}
	// Series of the failure reasons exist from the start, at zero: an
	// alert on rate() over a series that appears only with the first
	// failure cannot fire on that failure (rate needs two samples).
	for _, reason := range AckFailureReasons {
		scope.Tagged(map[string]string{"reason": reason}).Counter("ack_failures")
	}
	return p
}

// AckFailureReasons are the reason label values of ack_failures.
var AckFailureReasons = []string{"call_failed", "timeout", "shutdown"}

// Outcome counts a record outcome decided by the database (inserted,
// duplicate, conflict) or by validation (quarantined).
func (p *Pipeline) Outcome(outcome string) {
	p.scope.Tagged(map[string]string{"outcome": outcome}).Counter("records").Inc(1)
	if outcome == "duplicate" {
		p.scope.Tagged(map[string]string{"by": "db"}).Counter("duplicates").Inc(1)
	}
}

// FloodMessages counts messages by the path flood mode sent them on:
// "bulk" (committed by the poller) or "workflow" (an exception handed to
// its record workflow).
func (p *Pipeline) FloodMessages(path string, n int) {
	if n > 0 {
		p.scope.Tagged(map[string]string{"path": path}).Counter("flood_messages").Inc(int64(n))
	}
}

// Quarantined counts a quarantined message by reason code.
func (p *Pipeline) Quarantined(reason string) {
	p.scope.Tagged(map[string]string{"reason": reason}).Counter("quarantined").Inc(1)
}

// AckFailure counts a failed AckMessage call by reason (e.g. "error",
// "timeout").
func (p *Pipeline) AckFailure(reason string) {
	p.scope.Tagged(map[string]string{"reason": reason}).Counter("ack_failures").Inc(1)
}

// InsertError counts a failed insert attempt by its class (transient,
// environment, unclassified, bad_data; see store.Classify) and, for
// database errors, the error number (a small, fixed set; "0" when the
// error carries none).
func (p *Pipeline) InsertError(class string, number uint16) {
	p.scope.Tagged(map[string]string{"class": class, "code": strconv.Itoa(int(number))}).Counter("insert_errors").Inc(1)
}
