// Package workerapp wires one syncbridge worker process: database, broker
// consumer, acker, Temporal client and worker, metrics endpoint and poller
// workflows. worker/main.go only loads config and calls Run.
package workerapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/acker"
	"github.com/syncbridge/syncbridge/internal/bytebudget"
	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/groupcommit"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/workflows"
)

// StopTimeout is how long a stopping worker lets in-flight activities
// finish. It covers a poller finishing its batch in hand (a 30 s long poll
// plus hand-over) and an insert's start-to-close timeout.
const StopTimeout = 90 * time.Second

// Options are the process-level collaborators, injectable for tests.
type Options struct {
	Logger *slog.Logger
	// Consumer overrides the SDK consumer (tests inject faults here).
	Consumer mqclient.Consumer
	// PollRunFor overrides the poll activity's run length (tests).
	PollRunFor time.Duration
	// PollerKeepEvery overrides how often the pollers are re-ensured
	// (tests); zero means PollerKeepEvery.
	PollerKeepEvery time.Duration
	// Ready, if set, is called once the worker is polling, with the
	// address /metrics is served on ("" when disabled).
	Ready func(metricsAddr string)
	// LegacyShape runs the pre-lean record path (signal-with-start of
	// RecordWorkflow, serial hand-over, one transaction per insert), for
	// the benchmark's same-run baseline only.
	LegacyShape bool
	// CodecReady, if set, is called with the codec server's address once
	// it listens (only when SYNCBRIDGE_CODEC_ADDR is set).
	CodecReady func(addr string)
	// RecordWorkflow, when set, serves contract.RecordWorkflowV2Name
	// instead of workflows.RecordWorkflowV2: tests stand up a build whose
	// record shape is incompatible with this one's histories.
	RecordWorkflow workflows.RecordFunc
	// StuckAfter and StuckSampleEvery override the stuck-records gauge's
	// threshold and sampling interval (tests); zero means the defaults
	// (DefaultStuckAfter, 30 s).
	StuckAfter, StuckSampleEvery time.Duration
	// NoticeHook, if set, runs before each record notice is started
	// (tests hold notices there to stand for a crash after the commit).
	NoticeHook func(context.Context, store.Notice)
	// Identity, if set, is the Temporal client's identity instead of the
	// SDK's pid@host (tests run several workers in one process and tell
	// them apart by it in histories).
	Identity string
	// NoPollQueue leaves the poll-queue worker out: tests stand up a
	// build from before the poll queue (a rollback's target).
	NoPollQueue bool
	// DeadlockDetectionTimeout, if set, replaces the SDK's 1 s limit on a
	// workflow task's run between yields. The test harness raises it: on
	// a 2-core CI machine under -race, with the embedded server and
	// MariaDB in the same test, a workflow task was once descheduled for
	// over a second and the SDK failed it as a deadlock.
	DeadlockDetectionTimeout time.Duration
}

// Register adds the pipeline's workflows and activities to w. Shared with
// tests so they register exactly what production does.
func Register(w worker.Registry, a *activities.Activities) {
	RegisterWorkflows(w)
	w.RegisterActivity(a)
}

// RegisterWorkflows registers the workflows under their fixed names (also
// used by replayers).
func RegisterWorkflows(w worker.WorkflowRegistry) {
	workflows.Register(w)
}

// clientOptions sets the converters every client of the pipeline must
// use: payloads and failure texts encrypted unless the configuration opted
// out of it (config refuses to load without a key otherwise).
func clientOptions(cfg config.Config) (client.Options, error) {
	var o client.Options
	c, err := PayloadCodec(cfg)
	if err != nil || c == nil {
		return o, err
	}
	o.DataConverter = c.DataConverter()
	o.FailureConverter = c.FailureConverter()
	return o, nil
}

// PayloadCodec is the configured codec for the configured namespace; nil
// when payloads are plaintext.
func PayloadCodec(cfg config.Config) (*codec.AESGCM, error) {
	r, err := cfg.Keyring()
	if err != nil || r == nil {
		return nil, err
	}
	return r.Codec(cfg.Temporal.Namespace), nil
}

// Dial connects a Temporal client with the pipeline's converter.
func Dial(ctx context.Context, cfg config.Config, log *slog.Logger, mh client.MetricsHandler) (client.Client, error) {
	return dial(ctx, cfg, log, mh, "")
}

func dial(ctx context.Context, cfg config.Config, log *slog.Logger, mh client.MetricsHandler, identity string) (client.Client, error) {
	o, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	o.Identity = identity
	o.HostPort = cfg.Temporal.Address
	o.Namespace = cfg.Temporal.Namespace
	o.Logger = sdklog.NewStructuredLogger(slog.New(demoteExpectedOutcomes(log.Handler()))) // sdklog.go
	o.MetricsHandler = mh
	if err := applyTemporalSecurity(&o, cfg.Temporal); err != nil { // tls.go
		return nil, err
	}
	c, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.Temporal.Address, err)
	}
	return c, nil
}

// Run runs a worker until ctx is cancelled, then stops it gracefully:
// polling stops, in-flight activities finish (up to StopTimeout), pending
// acks are flushed. A clean stop returns nil.
func Run(ctx context.Context, cfg config.Config, o Options) error {
	p := newProcess(cfg, o)
	defer p.close()
	p.log.Info("starting worker", "config", cfg)

	if err := p.openDatabase(ctx); err != nil {
		return err
	}
	if err := p.dialTemporal(ctx); err != nil {
		return err
	}
	if err := p.checkDependencies(ctx); err != nil {
		return err
	}
	p.startBatching()
	p.startMonitoring(ctx)
	p.buildWorker()
	if err := p.serveMetrics(); err != nil {
		return err
	}
	if err := p.serveCodec(); err != nil {
		return err
	}
	if err := p.startPolling(ctx); err != nil {
		return err
	}
	p.log.Info("worker running", "taskQueue", cfg.Temporal.TaskQueue, "version", versionName(cfg.Versioning), "pollers", cfg.Pipeline.Pollers, "metrics", p.metricsAddr)
	if o.Ready != nil {
		o.Ready(p.metricsAddr)
	}

	<-ctx.Done()
	p.log.Info("stopping worker: finishing in-flight activities and the long poll in progress", "pollWait", cfg.Pipeline.PollWait, "timeout", StopTimeout)
	p.stopWorkers()
	p.log.Info("worker stopped")
	return nil
}

// process is one worker process's parts, built by Run's steps in order and
// closed in reverse by close (the worker itself is stopped by Run first,
// so in-flight activities still have every part they use).
type process struct {
	cfg config.Config
	o   Options
	log *slog.Logger
	reg *metrics.Registry

	db       *sql.DB
	st       *store.Store
	tc       client.Client
	consumer mqclient.Consumer
	ack      *acker.Acker
	commits  *groupcommit.Committer
	dbAlarm  *activities.DBAlarm
	health   *Health
	notices  *activities.Notices
	worker   worker.Worker
	// pollWorker serves the poll queue (buildWorker).
	pollWorker worker.Worker
	// metricsAddr is where /metrics listens; "" when disabled.
	metricsAddr string

	closers []func()
}

func newProcess(cfg config.Config, o Options) *process {
	p := &process{cfg: cfg, o: o, log: o.Logger, reg: metrics.New()}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.onClose(func() { _ = p.reg.Close() })
	return p
}

func (p *process) onClose(f func()) { p.closers = append(p.closers, f) }

func (p *process) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// openDatabase opens the pool and applies the schema migrations.
func (p *process) openDatabase(ctx context.Context) error {
	db, err := store.Open(ctx, p.cfg.DB.DSN, p.cfg.DB.MaxOpenConns)
	if err != nil {
		return fmt.Errorf("open database %s: %w", config.RedactDSN(p.cfg.DB.DSN), err)
	}
	p.db = db
	p.onClose(func() { _ = db.Close() })
	p.st = store.New(db)
	p.st.SingleStatementInserts = true
	p.st.Log = p.log
	if err := p.st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	return nil
}

// dialTemporal connects the client, its SDK metrics in the registry.
func (p *process) dialTemporal(ctx context.Context) error {
	tc, err := dial(ctx, p.cfg, p.log, sdktally.NewMetricsHandler(p.reg.Root), p.o.Identity)
	if err != nil {
		return err
	}
	p.tc = tc
	p.onClose(tc.Close)
	return nil
}

// checkDependencies builds the broker consumer and refuses to start on
// what would fail every record later (preflight.go).
func (p *process) checkDependencies(ctx context.Context) error {
	p.consumer = p.o.Consumer
	if p.consumer == nil {
		p.consumer = mqclient.NewConsumer(mqclient.Endpoint{
			URL: p.cfg.MQ.Endpoint, AccessKey: p.cfg.MQ.AccessKey, SecretKey: p.cfg.MQ.SecretKey, InstanceID: p.cfg.MQ.InstanceID,
		}, p.cfg.MQ.Topic, p.cfg.MQ.Group, p.cfg.MQ.Tag)
	}
	return preflight(ctx, p.cfg, p.tc, p.st, p.consumer)
}

// startBatching starts the acker and the group committer, which coalesce
// the records' broker and database calls.
func (p *process) startBatching() {
	reg := p.reg
	p.ack = acker.New(p.consumer, acker.Options{
		FlushInterval: p.cfg.Pipeline.AckFlushInterval,
		OnBatch: func(n int, took time.Duration, err error) {
			if err != nil {
				// Counted per broker call, however many workflows shared it.
				reg.Pipeline.AckFailure("call_failed")
			}
		},
	})
	p.onClose(p.ack.Close)

	// Inserts of concurrent records share transactions; the committer
	// closes before the database does (closers run in reverse).
	p.commits = groupcommit.New(p.st, groupcommit.Options{
		MaxBatch: p.cfg.Pipeline.CommitBatch,
		// Records of one consumed batch start together and insert within
		// milliseconds of each other: two commit slots and a short wait let
		// them share statements instead of each taking a free slot alone.
		// 20ms halves the round trips of a 100 records/s drain against 3ms
		// (BenchmarkDrain, 2026-12-02: 0.58 against 1.02 per message) for
		// 20ms more per record, which the drain's rate did not show.
		Concurrency: 2,
		Linger:      20 * time.Millisecond,
		OnBatch: func(n int, took time.Duration, _ error) {
			reg.Pipeline.CommitBatchSize.RecordValue(float64(n))
			reg.Pipeline.CommitLatency.Record(took)
		},
	})
	p.onClose(p.commits.Close)
}

// startMonitoring starts the readiness checks (served by serveMetrics;
// health.go) and the stuck-records gauge (stuck.go).
func (p *process) startMonitoring(ctx context.Context) {
	p.dbAlarm = &activities.DBAlarm{}
	p.health = newWorkerHealth(p.cfg, p.db, p.tc, p.log, p.dbAlarm)
	p.health.o.OnRound = func(r Readiness) {
		p.reg.Pipeline.WorkerReady.Update(boolGauge(r.Ready))
	}
	p.onClose(p.health.Start(ctx))

	stuck := &stuckSampler{
		tc: p.tc, taskQueue: p.cfg.Temporal.TaskQueue, after: p.o.StuckAfter, every: p.o.StuckSampleEvery,
		gauge: p.reg.Pipeline.StuckRecords, log: p.log.With("component", "stuck-sampler"),
	}
	p.onClose(stuck.Start(ctx))
}

// buildWorker creates the Temporal worker with the pipeline's workflows
// and activities registered.
func (p *process) buildWorker() {
	cfg := p.cfg
	p.worker = worker.New(p.tc, cfg.Temporal.TaskQueue, worker.Options{
		// A Worker Deployment version when SYNCBRIDGE_VERSIONING is on
		// (versioning.go).
		DeploymentOptions: deploymentOptions(cfg.Versioning),
		WorkerStopTimeout: StopTimeout,
		// Sized against the poll activity's heartbeat timeout (see
		// activities.HeartbeatSendEvery); a stop (cancellation, learnt
		// from a heartbeat response) still arrives within seconds.
		MaxHeartbeatThrottleInterval: activities.HeartbeatSendEvery,
		// Regular activities are the long poll and the fallbacks of records
		// stuck on the database or broker; a matching round trip costs
		// them nothing, and only tasks dispatched through matching report
		// activity schedule-to-start, the signal that workers are short
		// (the SyncbridgeActivityScheduleToStartHigh alert).
		DisableEagerActivities: true,
		// Poll activities hold a slot for minutes; keep room for inserts.
		MaxConcurrentActivityExecutionSize: 4*cfg.DB.MaxOpenConns + cfg.Pipeline.Pollers + 8,
		DeadlockDetectionTimeout:           p.o.DeadlockDetectionTimeout,
	})
	acts := p.activities()
	if p.o.RecordWorkflow != nil {
		workflows.RegisterWithRecord(p.worker, p.o.RecordWorkflow)
		p.worker.RegisterActivity(acts)
	} else {
		Register(p.worker, acts)
	}

	// The poll queue (contract.PollTaskQueue; workflows.PollerWorkflow):
	// only the Poll activity, one at a time. With its slot taken this
	// worker stops polling the queue, so the next poll scheduled there goes
	// to a worker that runs none, and the drain's work (records start on
	// the worker whose poll handed them over) spreads over the fleet. The
	// polls a fleet cannot place one per worker wait PollQueueWait and run
	// on the main task queue, whose activity slots above still count
	// every poller. A slot supplier that hands out further slots after a
	// delay was considered: its extra pollers, once granted, wait in
	// matching for a minute like any other, so in a steady fleet every
	// busy worker would have one waiting and a restarted poll would land
	// on a random worker again.
	if p.o.NoPollQueue {
		return
	}
	p.pollWorker = worker.New(p.tc, contract.PollTaskQueue(cfg.Temporal.TaskQueue), worker.Options{
		// The same Worker Deployment version as the main worker: the
		// poller's poll activities are dispatched to its workflow's
		// version when the poll queue belongs to it.
		DeploymentOptions:                  deploymentOptions(cfg.Versioning),
		WorkerStopTimeout:                  StopTimeout,
		MaxHeartbeatThrottleInterval:       activities.HeartbeatSendEvery,
		DisableEagerActivities:             true,
		MaxConcurrentActivityExecutionSize: 1,
		MaxConcurrentActivityTaskPollers:   1,
	})
	p.pollWorker.RegisterActivityWithOptions(acts.Poll, activity.RegisterOptions{Name: pollActivityName})
}

// pollActivityName is the name the Poll method registers under with the
// whole Activities struct (workers) and is scheduled by (the workflow).
const pollActivityName = "Poll"

// stopWorkers stops the main and the poll-queue workers together, each
// letting its in-flight activities finish (up to StopTimeout).
func (p *process) stopWorkers() {
	done := make(chan struct{})
	if p.pollWorker == nil {
		close(done)
	} else {
		go func() { defer close(done); p.pollWorker.Stop() }()
	}
	p.worker.Stop()
	<-done
}

// activities are the pipeline's activities over the process's parts, and
// the record notices they leave to start.
func (p *process) activities() *activities.Activities {
	cfg, o, reg := p.cfg, p.o, p.reg
	// Record runs of flood mode's conflicts and quarantines (and, on any
	// worker, the overdue ones a dead worker left in the outbox); started
	// by startPolling.
	p.notices = &activities.Notices{
		Temporal: p.tc, Store: p.st, TaskQueue: cfg.Temporal.TaskQueue, WorkflowIDPrefix: cfg.Pipeline.WorkflowIDPrefix,
		Topic: cfg.MQ.Topic, Group: cfg.MQ.Group, Metrics: reg.Pipeline, Log: p.log.With("component", "record-notices"),
		Lease: cfg.Pipeline.FloodNoticeLease, BeforeStart: o.NoticeHook, NoEagerStart: cfg.Versioning.Enabled,
		KeysBytes: cfg.Pipeline.FloodNoticeKeysBytes,
	}
	return &activities.Activities{
		Store:   p.st,
		Notices: p.notices,
		// The legacy shape is the pre-lean baseline: one transaction per insert.
		Committer: committerUnless(o.LegacyShape, p.commits),
		Bulk:      p.st,
		Bodies:    bytebudget.New(int64(cfg.Pipeline.BodyBytesInFlight)),
		Acker:     p.ack,
		Consumer:  p.consumer,
		Temporal:  withFailureText(p.tc, cfg), // failuretext.go
		Metrics:   reg.Pipeline,
		Settings: activities.Settings{
			TaskQueue:        cfg.Temporal.TaskQueue,
			WorkflowIDPrefix: cfg.Pipeline.WorkflowIDPrefix,
			Topic:            cfg.MQ.Topic,
			Group:            cfg.MQ.Group,
			BatchSize:        cfg.Pipeline.BatchSize,
			PollWait:         cfg.Pipeline.PollWait,
			MaxInFlight:      cfg.Pipeline.MaxInFlight,

			HandoverConcurrency: cfg.Pipeline.HandoverConcurrency,
			ParkFor:             parkFor(cfg.Pipeline.ParkFor),
			Flood: activities.Flood{
				Enabled:       cfg.Pipeline.Flood,
				Batches:       cfg.Pipeline.FloodBatches,
				RowsPerSecond: float64(cfg.Pipeline.FloodRowsPerSecond),
				SlowCommit:    cfg.Pipeline.FloodSlowCommit,
			},
			LegacyShape: o.LegacyShape,
			// Eager starts bypass version routing (activities.Settings).
			NoEagerStart: cfg.Versioning.Enabled,
			// Hand-over and parse limits (activities/handover_check.go).
			MaxWorkflowIDBytes:  cfg.Pipeline.MaxWorkflowIDBytes,
			MaxPayloadBytes:     cfg.Pipeline.MaxPayloadBytes,
			MaxBodyBytes:        cfg.Pipeline.MaxBodyBytes,
			DeviceTimeNotBefore: cfg.Pipeline.DeviceTimeNotBefore,
			DeviceTimeMaxAhead:  cfg.Pipeline.DeviceTimeMaxAhead,
		},
		DBErrors: &activities.DBErrorPolicy{UnclassifiedRetryFor: cfg.Pipeline.UnclassifiedRetryFor, Alarm: p.dbAlarm},
	}
}

// serveMetrics serves /metrics, /healthz and /readyz on
// SYNCBRIDGE_METRICS_ADDR, unless it is off.
func (p *process) serveMetrics() error {
	if p.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", p.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s (SYNCBRIDGE_METRICS_ADDR): %w", p.cfg.MetricsAddr, err)
	}
	p.metricsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.reg.Handler())
	p.health.Register(mux) // /healthz, /readyz
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("metrics server stopped", "error", err)
		}
	}()
	p.onClose(func() { _ = srv.Close() })
	return nil
}

// serveCodec serves the codec server for the Web UI and CLI when
// SYNCBRIDGE_CODEC_ADDR is set (codecserver.go).
func (p *process) serveCodec() error {
	addr, stop, err := serveCodec(p.cfg, p.log, p.reg.Root.SubScope("syncbridge"))
	if err != nil {
		return err
	}
	p.onClose(stop)
	if addr != "" {
		p.log.Info("codec server listening", "addr", addr, "uiOrigin", p.cfg.Codec.UIOrigin)
		if p.o.CodecReady != nil {
			p.o.CodecReady(addr)
		}
	}
	return nil
}

// startPolling starts the worker, the poller keeper (pollerkeeper.go)
// and the record notices: from here on, messages flow.
func (p *process) startPolling(ctx context.Context) error {
	cfg := p.cfg
	if err := p.worker.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	if p.pollWorker != nil {
		if err := p.pollWorker.Start(); err != nil {
			p.worker.Stop()
			return fmt.Errorf("start poll-queue worker: %w", err)
		}
	}
	if cfg.Versioning.Enabled {
		go reportVersionRouting(ctx, p.tc, cfg.Versioning, p.log) // versioning.go
	}
	if cfg.Pipeline.StartPollers {
		every := p.o.PollerKeepEvery
		if every <= 0 {
			every = PollerKeepEvery
		}
		stopKeeper, err := keepPollers(ctx, p.tc, p.st, cfg, p.o.PollRunFor, every, p.log)
		if err != nil {
			p.stopWorkers()
			return err
		}
		p.onClose(stopKeeper)
	}
	// Notices run on past ctx, until close (after the worker stopped): the
	// notices of its last activities start now instead of waiting in the
	// outbox for a sweep.
	noticeCtx, stopNotices := context.WithCancel(context.WithoutCancel(ctx))
	noticesDone := make(chan struct{})
	go func() { defer close(noticesDone); p.notices.Run(noticeCtx) }()
	p.onClose(func() { stopNotices(); <-noticesDone })
	return nil
}

// parkFor maps SYNCBRIDGE_PARK_FOR (0s: off) onto activities.Settings
// (0: the default, negative: off).
func parkFor(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func committerUnless(legacy bool, c *groupcommit.Committer) activities.Committer {
	if legacy {
		return nil
	}
	return c
}

// EnsurePollers starts the poller workflows that are not running, whatever
// the operator's stop intent (workers go through keepPollers, which
// respects it). Every worker of a fleet may call it: the IDs are fixed and
// a running poller is left alone, so the fleet converges on exactly
// cfg.Pipeline.Pollers; a failed or completed one is started anew.
func EnsurePollers(ctx context.Context, tc client.Client, cfg config.Config, runFor time.Duration) error {
	for i := 0; i < cfg.Pipeline.Pollers; i++ {
		id := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i)
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                       id,
			TaskQueue:                cfg.Temporal.TaskQueue,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			// Lets workers of other pipelines tell this one apart
			// (checkSharedNamespace).
			Memo: map[string]any{memoTaskQueue: cfg.Temporal.TaskQueue, memoWorkflowIDPrefix: cfg.Pipeline.WorkflowIDPrefix},
		}, contract.PollerWorkflowName, contract.PollerInput{Topic: cfg.MQ.Topic, Group: cfg.MQ.Group, Index: i, PollRunFor: runFor})
		if err != nil {
			return fmt.Errorf("start poller %s: %w", id, err)
		}
	}
	return nil
}
