package workerapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/acker"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/histcost"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/proccpu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// BenchmarkDrain measures, in one run on one embedded Temporal server and
// one MariaDB, everything the lean record path is judged by:
//
//   - ceiling: the new shape's bare ceiling: the same hand-over of the
//     same deliveries (duplicates included) and RecordWorkflowV2 with
//     no-op insert and ack (no broker, no database);
//
//   - lean: the full pipeline draining a backlog (msgs/s, the ratio to the
//     ceiling, history events and billable actions per record counted from
//     the real histories, SQL statements and round trips per message from
//     a counter on the pipeline's own database connections, broker calls per
//     message);
//
//   - legacy: the pre-lean shape on the same data (signal-with-start,
//     serial hand-over, regular activities, one transaction per insert),
//     the baseline the speed-up is a ratio to;
//
//   - flood: the same drain with SYNCBRIDGE_FLOOD_MODE=true, against its
//     baseline, a plain consumer loop, and its ceiling, a bulk loop
//     without Temporal, for each exception mix (bench_flood_test.go);
//
//   - recovery: a worker process (the real binary) killed with SIGKILL
//     mid-drain and restarted at once: seconds until the drain is back to
//     80% of its pre-kill rate.
//
//     go test -run '^$' -bench BenchmarkDrain -benchtime 1x -timeout 30m ./internal/workerapp
//
// Every drain is timed the same way: from the first consume request (the
// first hand-over for the ceiling) to the moment the broker holds nothing
// unacked (the last no-op ack for the ceiling, the last ack for the plain
// consumer), watched every 10 milliseconds. Process start-up (connecting,
// migrating, starting the pollers) is a constant that a real backlog
// amortises, so it is left out of every phase alike: the pipeline's
// consumes are held until all its pollers' polls run (benchPipeline), and
// the loops without Temporal have none; the ratios compare throughput.
// Ceiling, lean and legacy run twice, in mirror order (see
// benchSequence), and their rates are taken over both runs.
//
// SYNCBRIDGE_BENCH_MESSAGES sets the backlog (default 2000: 80% distinct
// keys, the rest republished, a fifth of those changed, 1% malformed, with
// 5% duplicate delivery; five times that for flood mode, its ceiling and
// its baseline, with SYNCBRIDGE_BENCH_EXCEPTIONS setting their mixes).
// SYNCBRIDGE_BENCH_PHASES runs a subset (comma separated: ceiling, lean,
// legacy, flood, bulk, plain, recovery, and rss, which only runs when
// named), in the same order; a ratio is reported only when both of its
// sides ran.
// SYNCBRIDGE_BENCH_CPUPROFILE names a directory for a CPU profile of each
// drain (benchProfile). SYNCBRIDGE_BENCH_CPU_PIDS names other processes
// whose CPU time each drain reports beside the benchmark's own
// (benchCPUMeter). Rates are only comparable within one run: run it on an
// otherwise quiet machine.
//
// With SYNCBRIDGE_TEST_TEMPORAL_ADDRESS set (internal/testenv) the phases
// run against that cluster's frontend instead of the embedded server: the
// worker, the emulator and the no-op ceiling stay in this process, each
// drain on a task queue of its own, so its history costs and lifetimes
// are its own runs only (scripts/rehearsal.sh bench, docs/rehearsal.md).
func BenchmarkDrain(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("SYNCBRIDGE_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	phases := map[string]bool{}
	for _, ph := range strings.Split(os.Getenv("SYNCBRIDGE_BENCH_PHASES"), ",") {
		if ph = strings.TrimSpace(ph); ph != "" {
			phases[ph] = true
		}
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var ceiling, lean, legacy drainResult
		for _, ph := range benchSequence {
			if len(phases) > 0 && !phases[ph] && !(ph == "flood" && (phases["bulk"] || phases["plain"])) || len(phases) == 0 && ph == "rss" {
				continue
			}
			switch ph {
			case "ceiling":
				ceiling = ceiling.add(ph, benchCeiling(b, n))
			case "lean":
				lean = lean.add(ph, benchPipeline(b, benchData(n, "bench-", 0.01), "lean"))
			case "legacy":
				legacy = legacy.add(ph, benchPipeline(b, benchData(n, "bench-", 0.01), "legacy"))
			case "flood":
				// Flood mode, its bulk ceiling and its baseline, for
				// each exception mix (bench_flood_test.go).
				benchFloodFamily(b, benchFloodMessages(b), phases)
			case "rss":
				// Opt-in (SYNCBRIDGE_BENCH_PHASES=rss): minutes of
				// publishing. The worker's peak memory on 20,000 and
				// on 200,000 messages: bounded if it does not grow
				// with the backlog.
				for _, size := range []int{20_000, 200_000} {
					peak, rate := benchFloodRSS(b, size)
					fmt.Printf("flood rss: %d messages drained at %.0f msgs/s, worker peak RSS %.1f MiB\n", size, rate, peak)
					b.ReportMetric(peak, fmt.Sprintf("rss_%dk_MiB", size/1000))
				}
			case "recovery":
				b.ReportMetric(benchRecovery(b, 3*n/2).Seconds(), "recovery_s")
			}
		}
		if ceiling.runs > 0 {
			ceiling.reportCPU(b, "ceiling")
			b.ReportMetric(ceiling.rate(), "ceiling_wf/s")
			b.ReportMetric(float64(ceiling.life50)/1e6, "ceiling_record_p50_ms")
		}
		if lean.runs > 0 {
			lean.reportCPU(b, "lean")
			b.ReportMetric(lean.rate(), "msgs/s")
			b.ReportMetric(float64(lean.life50)/1e6, "record_p50_ms")
			b.ReportMetric(lean.eventsPerRecord, "events/record")
			b.ReportMetric(lean.actionsPerRecord, "actions/record")
			b.ReportMetric(lean.insertedEvents, "events/inserted_record")
			b.ReportMetric(lean.insertedActions, "actions/inserted_record")
			b.ReportMetric(lean.stmtsPerMsg, "db_stmts/msg")
			b.ReportMetric(lean.tripsPerMsg, "db_round_trips/msg")
			b.ReportMetric(lean.mqPerMsg, "mq_calls/msg")
			if ceiling.runs > 0 {
				b.ReportMetric(lean.rate()/ceiling.rate(), "x_ceiling")
			}
		}
		if legacy.runs > 0 {
			b.ReportMetric(legacy.rate(), "legacy_msgs/s")
			if lean.runs > 0 {
				b.ReportMetric(lean.rate()/legacy.rate(), "x_legacy")
			}
			fmt.Printf("legacy shape: %.1f events/record, %.2f actions/record, %.2f db statements/msg, %.2f mq calls/msg\n",
				legacy.eventsPerRecord, legacy.actionsPerRecord, legacy.stmtsPerMsg, legacy.mqPerMsg)
		}
	}
}

// benchSequence is the order the phases run in. The embedded server slows
// down as its in-memory SQLite fills with the histories and visibility rows
// of every drain before (on this machine one sequence of eight 2,000-record
// drains went from 112 to 65 records/s), so a phase measured later is
// handicapped. The phases that are compared with one another therefore run
// twice, in mirror order (ceiling, lean, legacy, legacy, lean, ceiling):
// each shape's two runs sit at the same mean position, and a drift that
// grows steadily with the work done cancels out of their ratios. Flood mode
// and the plain consumer come after them; the plain loop uses no Temporal,
// so flood mode is the one handicapped there, and its ratio is a lower bound.
var benchSequence = []string{"ceiling", "lean", "legacy", "legacy", "lean", "ceiling", "flood", "recovery", "rss"}

// add folds one more run of a shape into r (printing it): the rate over
// both runs is their messages over their time, the per-message and
// per-record figures their mean (both runs drain the same backlog).
func (r drainResult) add(shape string, run drainResult) drainResult {
	// Printed, not logged: a benchmark's log keeps only its first ten
	// lines, and the drift between the runs is part of the result.
	line := fmt.Sprintf("%s, run %d: %d messages in %s, %.1f msgs/s", shape, r.runs+1, run.msgs, run.elapsed.Round(time.Millisecond), run.rate())
	if run.life50 > 0 {
		line += fmt.Sprintf("; records lived %s (median), %s (90th percentile)", run.life50.Round(time.Millisecond), run.life90.Round(time.Millisecond))
	}
	if run.findable > 0 {
		line += fmt.Sprintf("; %d record and notice runs, the last conflict or quarantine findable %s after the first consume", run.records, run.findable.Round(time.Millisecond))
	}
	if len(run.cpu) > 0 {
		line += "; cpu " + proccpu.Format(run.cpu)
	}
	fmt.Println(line)
	k := float64(r.runs)
	mean := func(a, b float64) float64 { return (a*k + b) / (k + 1) }
	return drainResult{
		runs:             r.runs + 1,
		msgs:             r.msgs + run.msgs,
		elapsed:          r.elapsed + run.elapsed,
		eventsPerRecord:  mean(r.eventsPerRecord, run.eventsPerRecord),
		actionsPerRecord: mean(r.actionsPerRecord, run.actionsPerRecord),
		insertedEvents:   mean(r.insertedEvents, run.insertedEvents),
		insertedActions:  mean(r.insertedActions, run.insertedActions),
		stmtsPerMsg:      mean(r.stmtsPerMsg, run.stmtsPerMsg),
		tripsPerMsg:      mean(r.tripsPerMsg, run.tripsPerMsg),
		mqPerMsg:         mean(r.mqPerMsg, run.mqPerMsg),
		life50:           time.Duration(mean(float64(r.life50), float64(run.life50))),
		life90:           time.Duration(mean(float64(r.life90), float64(run.life90))),
		findable:         time.Duration(mean(float64(r.findable), float64(run.findable))),
		eventsPerMsg:     mean(r.eventsPerMsg, run.eventsPerMsg),
		actionsPerMsg:    mean(r.actionsPerMsg, run.actionsPerMsg),
		records:          r.records + run.records,
		cpu:              proccpu.Add(r.cpu, run.cpu),
	}
}

// reportCPU reports the CPU seconds each measured process took over the
// shape's drains (all its runs), as <tag>_cpu_<process>_s.
func (r drainResult) reportCPU(b *testing.B, tag string) {
	for _, u := range r.cpu {
		b.ReportMetric(u.Seconds, tag+"_cpu_"+u.Name+"_s")
	}
}

// BenchCPUEnv names the processes whose CPU time each drain reports beside
// the benchmark process's own ("self": the in-process worker, emulator and,
// without an external cluster, the embedded Temporal server), in
// proccpu.Parse's form: NAME=PID[+PID...] or NAME=~PATTERN (every process
// whose name matches, found afresh at each sample), comma separated, e.g.
// temporal=1234,postgres=~postgres,mariadb=~mariadbd|mysqld.
const BenchCPUEnv = "SYNCBRIDGE_BENCH_CPU_PIDS"

var benchCPU struct {
	once  sync.Once
	meter *proccpu.Meter
	err   error
}

// benchCPUMeter is the meter of this process and BenchCPUEnv's groups.
// Each drain samples it at its start and its end (drainClock: the first
// consume and the last ack), so the CPU is that of the span its rate is
// measured over: work after the last ack (flood mode's notice runs,
// records closing) and set-up are outside it.
func benchCPUMeter(b *testing.B) *proccpu.Meter {
	benchCPU.once.Do(func() {
		benchCPU.meter, benchCPU.err = proccpu.New(os.Getenv(BenchCPUEnv), true)
	})
	if benchCPU.err != nil {
		b.Fatalf("%s: %v", BenchCPUEnv, benchCPU.err)
	}
	return benchCPU.meter
}

// benchProfile writes a CPU profile of one drain, from its start to its
// last ack, to $SYNCBRIDGE_BENCH_CPUPROFILE/<shape>-<n>.prof when that
// variable names a directory. (go test -cpuprofile covers the whole
// benchmark: set-up, history reading and every phase at once.) The
// returned function stops it.
func benchProfile(b *testing.B, shape string) func() {
	dir := os.Getenv("SYNCBRIDGE_BENCH_CPUPROFILE")
	if dir == "" {
		return func() {}
	}
	var f *os.File
	for i := 1; ; i++ {
		var err error
		f, err = os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s-%d.prof", shape, i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			b.Fatal(err)
		}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("%s (is go test's -cpuprofile set too?)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// rate is messages per second over every run.
func (r drainResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.msgs) / r.elapsed.Seconds()
}

// drainClock times one drain (see BenchmarkDrain): started by the first
// consume request, stopped when the broker holds nothing unacked.
type drainClock struct {
	first atomic.Int64 // unix nanoseconds of the first consume request
	// meter, when set, is sampled at the first consume (cpu0) and by
	// cpuSince at the end.
	meter *proccpu.Meter
	cpu0  atomic.Pointer[proccpu.Snapshot]
}

// observe is called for every broker request of the drain.
func (c *drainClock) observe(r *http.Request) {
	if isConsume(r) {
		if c.first.CompareAndSwap(0, time.Now().UnixNano()) && c.meter != nil {
			s := c.meter.Snapshot()
			c.cpu0.Store(&s)
		}
	}
}

// cpuSince is the CPU each metered process took since the first consume;
// nil without a meter.
func (c *drainClock) cpuSince() []proccpu.Usage {
	s := c.cpu0.Load()
	if c.meter == nil || s == nil {
		return nil
	}
	return c.meter.Since(*s)
}

// isConsume tells a consume (GET /topics/<topic>/messages) from other
// broker calls; the readiness probe's GET of the endpoint itself is not
// one.
func isConsume(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/messages")
}

// waitAcked returns how long the drain took: it watches the emulator every
// 10ms until all published messages are settled for the group. (Every 2ms,
// the emulator's stats, which walk the topic, took 2% of the CPU of a lean
// drain, a cost the ceiling does not pay.)
func (c *drainClock) waitAcked(b *testing.B, shape string, p *pipe, published int, timeout time.Duration) time.Duration {
	deadline := time.Now().Add(timeout)
	marks := []float64{0.5, 0.9, 0.99}
	var at []string
	for {
		st := p.env.MQ.Stats(p.env.Topic, p.env.Group)
		if len(marks) > 0 && float64(st.Acked) >= marks[0]*float64(published) && c.first.Load() != 0 {
			at = append(at, time.Since(time.Unix(0, c.first.Load())).Round(time.Millisecond).String())
			marks = marks[1:]
		}
		if st.Published == published && st.Ready == 0 && st.InFlight == 0 && c.first.Load() != 0 {
			b.Logf("%s: 50/90/99%% acked after %s", shape, strings.Join(at, " / "))
			return time.Since(time.Unix(0, c.first.Load()))
		}
		if time.Now().After(deadline) {
			b.Fatalf("not drained after %s: %+v", timeout, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchData is the backlog the drains take. The ceiling takes it without
// the malformed 1%: quarantine has no no-op stand-in.
func benchData(n int, prefix string, bad float64) []syncevent.OutMessage {
	return generate(syncevent.GenOptions{Count: n, DistinctKeys: n * 4 / 5, ChangedRate: 0.2, BadRate: bad, Seed: 99, KeyPrefix: prefix})
}

type drainResult struct {
	runs                               int
	msgs                               int
	elapsed                            time.Duration
	life50, life90                     time.Duration // record workflow start to close
	eventsPerRecord, actionsPerRecord  float64
	insertedEvents, insertedActions    float64
	stmtsPerMsg, tripsPerMsg, mqPerMsg float64
	eventsPerMsg, actionsPerMsg        float64       // history cost of the drain's record and notice runs
	findable                           time.Duration // flood: first consume to the last record notice started
	records                            int           // record workflow runs the drain left
	cpu                                []proccpu.Usage
}

// benchPipeline drains the backlog with one worker in shape "lean" (the
// default), "legacy" or "flood".
func benchPipeline(b *testing.B, msgs []syncevent.OutMessage, shape string) drainResult {
	vars := map[string]string{"SYNCBRIDGE_POLLERS": "2", "SYNCBRIDGE_MAX_INFLIGHT": "400", "SYNCBRIDGE_LOG_LEVEL": "warn"}
	if shape == "flood" {
		vars["SYNCBRIDGE_FLOOD_MODE"] = "true"
	}
	legacy := shape == "legacy"
	p := newPipe(b, mqemu.Config{InvisibleTime: time.Minute, Faults: mqemu.Faults{DuplicateRate: benchDupRate}, Seed: 1}, vars)
	delete(p.vars, "SYNCBRIDGE_ACK_FLUSH") // production's ack coalescing, not the tests' short flush
	p.env.Logger = quietLogger()

	// Count broker calls by fronting the emulator with a counting handler.
	// The front also holds every consume until the worker's pollers all
	// run (release, below): the drain is timed from the moment a running
	// worker meets the backlog, as when gateways reopen on a running
	// service, not from a worker's start, whose second poller on one
	// worker starts about a second late (workflows.PollQueueWait and the
	// server's timer) and would take a third of a 3 s flood drain.
	var mqCalls atomic.Int64
	clock := drainClock{meter: benchCPUMeter(b)}
	var holding atomic.Bool
	release := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if holding.Load() && isConsume(r) {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		mqCalls.Add(1)
		clock.observe(r)
		p.env.MQ.ServeHTTP(w, r)
	}))
	defer front.Close()
	p.vars["ROCKETMQ_ENDPOINT"] = front.URL

	// Count this pipeline's SQL on its own connections (sqlcount_test.go).
	tap := newSQLCounter(p.env.DSN)
	p.vars["POLARDB_DSN"] = tap.dsn
	// Migrate before counting.
	w := p.worker(Options{Logger: quietLogger()})
	_ = w.stop()
	holding.Store(true)

	p.publish(msgs)

	w = p.worker(Options{LegacyShape: legacy, Logger: quietLogger()})
	pollers := p.config().Pipeline.Pollers
	waitBench(b, 2*time.Minute, func() bool { return len(p.runningPolls()) == pollers })
	// The drain starts here for every count, as for its clock and CPU:
	// broker calls, SQL and the profile leave the worker's start-up out.
	mqCalls.Store(0)
	stmts0, trips0 := tap.statements.Load(), tap.trips.Load()
	stopProfile := benchProfile(b, shape)
	holding.Store(false)
	close(release)
	elapsed := clock.waitAcked(b, shape, p, len(msgs), 30*time.Minute)
	cpu := clock.cpuSince()
	stopProfile()
	var findable time.Duration
	if shape == "flood" {
		// Conflicts and quarantines were acked with their bulk commit;
		// their record runs are started after it. How long until the
		// last one exists, counted from the first consume like the drain.
		waitBench(b, 5*time.Minute, func() bool {
			return p.pendingNotices() == 0
		})
		findable = time.Since(time.Unix(0, clock.first.Load()))
	}
	p.waitDrained(len(msgs), 5*time.Minute) // and every record run completed
	// Every run this worker started must be listed before its lifetimes
	// and histories are read: a cluster's visibility lags.
	settleVisibility(b, p.env.Client, p.env.TaskQueue, int64(metricSum(b, w.metricsAddr, "syncbridge_workflows_started_total")))
	p50, p90 := recordLifetimes(b, p.env.Client, p.env.TaskQueue)
	stmts, trips := tap.statements.Load()-stmts0, tap.trips.Load()-trips0
	if shape == "flood" {
		// Where the messages went: a drain's tail waits on any message
		// the bulk path left to a record workflow, or on a poll paused
		// by the in-flight cap.
		b.Logf("flood: messages by path: bulk %v, record workflow %v; polls paused by the in-flight cap %v",
			metricLabelled(b, w.metricsAddr, "syncbridge_flood_messages_total", `path="bulk"`),
			metricLabelled(b, w.metricsAddr, "syncbridge_flood_messages_total", `path="workflow"`),
			metricSum(b, w.metricsAddr, "syncbridge_poll_throttled_total"))
	}
	_ = w.stop()
	p.stopPollers() // now, not when the benchmark ends: idle pollers still cost the server timers

	all, inserted := historyCosts(b, p)
	b.Logf("%s: drained %d messages in %s: %d record workflows, %d broker calls, %d statements, %d round trips",
		shape, len(msgs), elapsed.Round(time.Millisecond), all.records, mqCalls.Load(), stmts, trips)
	m := float64(len(msgs))
	return drainResult{
		runs:             1,
		msgs:             len(msgs),
		elapsed:          elapsed,
		life50:           p50,
		life90:           p90,
		eventsPerRecord:  all.perRecord().events,
		actionsPerRecord: all.perRecord().actions,
		insertedEvents:   inserted.perRecord().events,
		insertedActions:  inserted.perRecord().actions,
		stmtsPerMsg:      float64(stmts) / m,
		tripsPerMsg:      float64(trips) / m,
		mqPerMsg:         float64(mqCalls.Load()) / m,
		eventsPerMsg:     float64(all.cost.Events) / m,
		actionsPerMsg:    float64(all.cost.Actions) / m,
		findable:         findable,
		records:          all.records,
		cpu:              cpu,
	}
}

type costSum struct {
	records int
	cost    histcost.Cost
}

type perRecord struct{ events, actions float64 }

func (s costSum) perRecord() perRecord {
	if s.records == 0 {
		return perRecord{}
	}
	return perRecord{float64(s.cost.Events) / float64(s.records), float64(s.cost.Actions) / float64(s.records)}
}

// benchRunTypes are the runs a drain leaves for its messages: record runs,
// and flood mode's notices.
const benchRunTypes = "WorkflowType IN ('" + contract.RecordWorkflowName + "', '" + contract.RecordWorkflowV2Name + "', '" + contract.FloodNoticeWorkflowName + "')"

// eachRecord calls fn for every record or notice run on taskQueue.
func eachRecord(b *testing.B, c client.Client, taskQueue string, fn func(*workflowpb.WorkflowExecutionInfo)) {
	ctx := context.Background()
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         benchRunTypes + " AND TaskQueue = '" + taskQueue + "'",
			PageSize:      500,
			NextPageToken: token,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			fn(e)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return
		}
	}
}

// recordLifetimes returns the median and 90th percentile of the time
// record workflows on taskQueue ran, start to close, once none runs. A
// record that closes before the server's visibility queue reaches its
// start saves the server the visibility insert of that start
// (docs/benchmarks.md, "Lean vs its ceiling"), so how long records live is part of what a
// drain costs the server.
func recordLifetimes(b *testing.B, c client.Client, taskQueue string) (p50, p90 time.Duration) {
	running := benchRunTypes + " AND TaskQueue = '" + taskQueue + "' AND ExecutionStatus = 'Running'"
	testwait.Until(b, 5*time.Minute, "every record closed", func() bool {
		resp, err := c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: running})
		return err == nil && resp.GetCount() == 0
	})
	var lives []time.Duration
	eachRecord(b, c, taskQueue, func(e *workflowpb.WorkflowExecutionInfo) {
		lives = append(lives, e.GetCloseTime().AsTime().Sub(e.GetStartTime().AsTime()))
	})
	if len(lives) == 0 {
		return 0, 0 // flood mode with no exception left to a record run
	}
	slices.Sort(lives)
	return lives[len(lives)/2], lives[len(lives)*9/10]
}

// historyCosts prices every record workflow's history on this pipe's task
// queue, in all and for those whose outcome was a plain insert.
func historyCosts(b *testing.B, p *pipe) (all, inserted costSum) {
	eachRecord(b, p.env.Client, p.env.TaskQueue, func(e *workflowpb.WorkflowExecutionInfo) {
		evs := p.history(e.GetExecution().GetWorkflowId())
		c := histcost.Of(evs)
		all.records++
		all.cost = all.cost.Add(c)
		var res contract.RecordResult
		last := evs[len(evs)-1].GetWorkflowExecutionCompletedEventAttributes().GetResult()
		if last != nil {
			if err := decodeResult(p, last, &res); err != nil {
				b.Fatalf("decode the result of %s: %v", e.GetExecution().GetWorkflowId(), err)
			}
			if res.Outcome == contract.OutcomeInserted {
				inserted.records++
				inserted.cost = inserted.cost.Add(c)
			}
		}
	})
	return all, inserted
}

// benchCeiling runs the new shape with nothing behind it: the same
// hand-over (two "pollers" handing batches of 16 over concurrently) and
// RecordWorkflowV2 whose local insert and ack return at once.
func benchCeiling(b *testing.B, n int) drainResult {
	env := testenv.New(b)
	ack := &noopAcker{seen: map[string]bool{}}
	scope := tally.NewTestScope("", nil) // counts the runs started, for settleVisibility
	acts := &activities.Activities{
		Committer: noopCommitter{},
		Acker:     ack,
		Temporal:  env.Client,
		Metrics:   metrics.NewPipeline(scope),
		Settings:  activities.Settings{TaskQueue: env.TaskQueue, WorkflowIDPrefix: env.TaskQueue + "/", Topic: env.Topic, Group: env.Group},
	}
	w := worker.New(env.Client, env.TaskQueue, worker.Options{})
	Register(w, acts)
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	msgs := benchData(n, "ceiling-", 0)
	batches := ceilingBatches(msgs)
	deliveries := 0
	for _, batch := range batches {
		deliveries += len(batch)
	}
	ack.want = deliveries
	log := sdklog.NewStructuredLogger(quietLogger())
	stopProfile := benchProfile(b, "ceiling")
	meter := benchCPUMeter(b)
	cpu0 := meter.Snapshot()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(batches)); i = next.Add(1) - 1 {
				activities.HandOverBatch(context.Background(), acts, log, batches[i])
			}
		}()
	}
	wg.Wait()
	// The drain ends with the last ack, not when no record runs: a
	// republished message parked behind its key's run (park.go) is acked
	// after that run completed.
	// The acker stamps the last ack itself, so how often this looks does
	// not change the measured time.
	var end time.Time
	testwait.Until(b, 5*time.Minute, "the ceiling's last ack", func() bool {
		ack.mu.Lock()
		defer ack.mu.Unlock()
		end = ack.done
		return !end.IsZero()
	})
	cpu := meter.Since(cpu0)
	stopProfile()
	elapsed := end.Sub(start)
	var started int64
	for _, c := range scope.Snapshot().Counters() {
		if c.Name() == "workflows_started" {
			started += c.Value()
		}
	}
	settleVisibility(b, env.Client, env.TaskQueue, started)
	p50, p90 := recordLifetimes(b, env.Client, env.TaskQueue)
	b.Logf("ceiling: %d messages (%d deliveries) handed to no-op lean records in %s", len(msgs), deliveries, elapsed.Round(time.Millisecond))
	return drainResult{runs: 1, msgs: len(msgs), elapsed: elapsed, life50: p50, life90: p90, cpu: cpu}
}

// settleVisibility waits until visibility lists every run of the drain on
// taskQueue, closed: at least started runs (the runs the worker started,
// which it counts; flood mode's notice runs come on top), none of them
// open, and the count unchanged over 2 s. The embedded server's visibility
// is written within milliseconds; a cluster's trails its history by its
// visibility queue, and listing too early would price only part of the
// drain. After 2 minutes it goes on with a note in the log.
func settleVisibility(b *testing.B, c client.Client, taskQueue string, started int64) {
	count := func(extra string) (int64, bool) {
		resp, err := c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
			Query: benchRunTypes + " AND TaskQueue = '" + taskQueue + "'" + extra})
		return resp.GetCount(), err == nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	last, same := int64(-1), 0
	for {
		all, ok1 := count("")
		open, ok2 := count(" AND ExecutionStatus = 'Running'")
		if ok1 && ok2 && all == last && open == 0 && all >= started {
			if same++; same >= 4 {
				return
			}
		} else {
			same = 0
		}
		last = all
		if time.Now().After(deadline) {
			// Printed: a benchmark's log keeps only its first lines.
			fmt.Printf("visibility on %s not settled after 2 minutes: %d runs listed (%d open), %d started; the figures below count the listed ones\n", taskQueue, all, open, started)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// benchDupRate is the share of messages the emulator delivers twice in the
// pipeline phases (mqemu.Faults.DuplicateRate).
const benchDupRate = 0.05

// ceilingBatches turns the backlog into the batches of 16 deliveries the
// ceiling hands over: every message once and, like the emulator with
// benchDupRate, a seeded 5% of them a second time with their own receipt
// handle at the head of the next batch, while the first delivery is still
// in flight. The ceiling thus hands over the same stream as the drains it
// is compared with.
func ceilingBatches(msgs []syncevent.OutMessage) [][]mqclient.Message {
	rng := rand.New(rand.NewPCG(99, 1))
	var batches [][]mqclient.Message
	var again []mqclient.Message
	for j := 0; j < len(msgs) || len(again) > 0; {
		batch := again
		again = nil
		for ; len(batch) < 16 && j < len(msgs); j++ {
			d := mqclient.Message{MessageID: fmt.Sprintf("m%d", j), Key: msgs[j].Key, Tag: msgs[j].Tag,
				ReceiptHandle: fmt.Sprintf("h%d", j), Body: msgs[j].Body, ConsumedTimes: 1}
			batch = append(batch, d)
			if rng.Float64() < benchDupRate {
				d.ReceiptHandle += "-again"
				again = append(again, d)
			}
		}
		batches = append(batches, batch)
	}
	return batches
}

type noopCommitter struct{}

func (noopCommitter) Insert(context.Context, syncevent.Event) (store.Outcome, error) {
	return store.Inserted, nil
}

// noopAcker acks nothing but remembers when it had seen every handle of
// the backlog: the ceiling's end of the drain.
type noopAcker struct {
	want int
	mu   sync.Mutex
	seen map[string]bool
	done time.Time
}

func (a *noopAcker) Ack(_ context.Context, handles []string) (acker.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range handles {
		a.seen[h] = true
	}
	if len(a.seen) == a.want && a.done.IsZero() {
		a.done = time.Now()
	}
	return acker.Result{Acked: len(handles)}, nil
}

// benchRecovery drains through a worker process, kills it with SIGKILL
// once a third of the keys are stored, starts a new one at once, and
// returns how long after the kill the drain was back to 80% of the rate
// it had before.
func benchRecovery(b *testing.B, n int) time.Duration {
	p := newPipe(b, mqemu.Config{InvisibleTime: time.Minute, Seed: 1},
		map[string]string{"SYNCBRIDGE_POLLERS": "2", "SYNCBRIDGE_MAX_INFLIGHT": "400", "SYNCBRIDGE_LOG_LEVEL": "warn"})
	p.env.Logger = quietLogger()
	// Migrate first, so the row counter below has a table to count.
	w := p.worker(Options{Logger: quietLogger()})
	_ = w.stop()
	msgs := generate(syncevent.GenOptions{Count: n, Seed: 5, KeyPrefix: "recovery-"})
	p.publish(msgs)
	bin := testenv.WorkerBinary(b)

	var samples []rowSample
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			mu.Lock()
			samples = append(samples, rowSample{time.Now(), countRows(nil, p.env.DB)})
			mu.Unlock()
		}
	}()
	defer close(done)
	rowsAt := func() int { mu.Lock(); defer mu.Unlock(); return samples[len(samples)-1].rows }

	first := p.process(bin)
	waitBench(b, 5*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(samples) > 0 && samples[len(samples)-1].rows >= n/3
	})
	killAt := time.Now()
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	second := p.process(bin)
	defer func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() }()
	waitBench(b, 10*time.Minute, func() bool { return rowsAt() >= n })

	mu.Lock()
	defer mu.Unlock()
	before := rateBetween(samples, killAt.Add(-5*time.Second), killAt)
	for _, s := range samples {
		if s.at.Before(killAt.Add(2 * time.Second)) {
			continue
		}
		if rateBetween(samples, s.at.Add(-2*time.Second), s.at) >= 0.8*before {
			rec := s.at.Sub(killAt)
			b.Logf("recovery: %.0f rows/s before the SIGKILL; back to >= 80%% after %s", before, rec.Round(100*time.Millisecond))
			return rec
		}
	}
	b.Logf("recovery: %.0f rows/s before the SIGKILL; never back to 80%% before the backlog ran out", before)
	return time.Since(killAt)
}

type rowSample struct {
	at   time.Time
	rows int
}

// rateBetween is rows per second stored in [from, to].
func rateBetween(samples []rowSample, from, to time.Time) float64 {
	var a, z *rowSample
	for i := range samples {
		s := &samples[i]
		if a == nil && !s.at.Before(from) {
			a = s
		}
		if !s.at.After(to) {
			z = s
		}
	}
	if a == nil || z == nil || !z.at.After(a.at) {
		return 0
	}
	return float64(z.rows-a.rows) / z.at.Sub(a.at).Seconds()
}

func waitBench(b *testing.B, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process starts the worker binary with this pipe's configuration.
func (p *pipe) process(bin string) *exec.Cmd {
	p.t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	for k, v := range p.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "SYNCBRIDGE_METRICS_ADDR=off")
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	return cmd
}

// decodeResult decodes a workflow result as the pipeline's clients do.
func decodeResult(p *pipe, payloads *commonpb.Payloads, v any) error {
	if p.env.Codec != nil {
		return p.env.Codec.DataConverter().FromPayloads(payloads, v)
	}
	return converter.GetDefaultDataConverter().FromPayloads(payloads, v)
}

// benchPlainConsumer is the loop syncbridge replaces, as the baseline for
// flood mode: one consumer taking 3 messages per poll, for each a SELECT
// by key and an INSERT when absent, then one ack per message. No
// workflow, no conflict record, no quarantine (bad input is acked and
// dropped), no redelivery handling beyond the SELECT: none of the
// guarantees, on the same emulator, database server and data.
func benchPlainConsumer(b *testing.B, msgs []syncevent.OutMessage) drainResult {
	p := newPipe(b, mqemu.Config{InvisibleTime: time.Minute, Faults: mqemu.Faults{DuplicateRate: benchDupRate}, Seed: 1}, nil)
	p.env.Logger = quietLogger()
	db, err := store.Open(context.Background(), p.env.DSN, 4)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := store.New(db).Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	p.publish(msgs)
	c := mqclient.NewConsumer(mqclient.Endpoint{URL: p.env.MQURL, AccessKey: p.env.AccessKey, SecretKey: p.env.SecretKey, InstanceID: p.env.InstanceID},
		p.env.Topic, p.env.Group, "")
	ctx := context.Background()
	meter := benchCPUMeter(b)
	cpu0 := meter.Snapshot()
	start := time.Now() // just before the first consume request, as drainClock
	var last time.Time  // the last ack: the empty poll that ends the loop is not part of the drain
	for {
		got, err := c.Consume(ctx, 3, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		// Only an empty poll asks whether the drain is over: the
		// emulator's stats walk the topic, a cost a real consumer loop
		// does not have.
		if len(got) == 0 {
			if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Published == len(msgs) && st.Ready == 0 && st.InFlight == 0 {
				break
			}
		}
		for _, m := range got {
			if ev, err := syncevent.Parse(m.Key, m.MessageID, m.Body); err == nil {
				var one int
				err := db.QueryRowContext(ctx, "SELECT 1 FROM patient_records WHERE local_record_id = ?", ev.Key).Scan(&one)
				if errors.Is(err, sql.ErrNoRows) {
					_, err = db.ExecContext(ctx, `INSERT INTO patient_records
						(local_record_id, message_id, patient_id, notes, device_time, payload, payload_hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
						ev.Key, ev.MessageID, ev.PatientID, ev.Notes, ev.DeviceTime, ev.Payload, ev.Hash)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if _, err := c.Ack(ctx, []string{m.ReceiptHandle}); err != nil {
				b.Fatal(err)
			}
			last = time.Now()
		}
	}
	cpu := meter.Since(cpu0) // the closing empty poll (1 s of waiting) included
	elapsed := last.Sub(start)
	return drainResult{runs: 1, msgs: len(msgs), elapsed: elapsed, cpu: cpu}
}

// TestCeilingBatches: the ceiling's stream holds every message once and a
// second delivery of about benchDupRate of them, each in a later batch
// than its first and with its own receipt handle (the ceiling ends when it
// has seen every handle, so a repeated one would never end it).
func TestCeilingBatches(t *testing.T) {
	msgs := benchData(2000, "t-", 0)
	first := map[string]int{} // message ID -> batch of its first delivery
	handles := map[string]bool{}
	dups := 0
	for i, batch := range ceilingBatches(msgs) {
		if len(batch) == 0 || len(batch) > 16 {
			t.Fatalf("batch %d holds %d deliveries, want 1 to 16", i, len(batch))
		}
		for _, d := range batch {
			if handles[d.ReceiptHandle] {
				t.Fatalf("receipt handle %s delivered twice", d.ReceiptHandle)
			}
			handles[d.ReceiptHandle] = true
			if at, ok := first[d.MessageID]; ok {
				dups++
				if at >= i {
					t.Errorf("%s again in batch %d, its first delivery in batch %d", d.MessageID, i, at)
				}
				continue
			}
			first[d.MessageID] = i
		}
	}
	if len(first) != len(msgs) {
		t.Fatalf("%d messages delivered, want %d", len(first), len(msgs))
	}
	if want := benchDupRate * float64(len(msgs)); float64(dups) < want/2 || float64(dups) > want*2 {
		t.Errorf("%d second deliveries, want about %.0f", dups, want)
	}
}

// TestDrainResultAdd: a shape's rate over its two runs is messages over
// time, not the mean of the two rates (which would favour a fast run).
func TestDrainResultAdd(t *testing.T) {
	var r drainResult
	r = r.add("test", drainResult{runs: 1, msgs: 2000, elapsed: 10 * time.Second, stmtsPerMsg: 1})
	r = r.add("test", drainResult{runs: 1, msgs: 2000, elapsed: 30 * time.Second, stmtsPerMsg: 0.5})
	if r.runs != 2 || r.rate() != 100 || r.stmtsPerMsg != 0.75 {
		t.Errorf("got %d runs, %.2f msgs/s, %.2f statements/msg; want 2, 100, 0.75", r.runs, r.rate(), r.stmtsPerMsg)
	}
}
