// Package chaos drains a topic through real worker processes while
// breaking things around them: duplicate delivery, expired receipt
// handles and 5xx from the broker, SIGKILLed workers, a database cut. It
// then checks, from outside the workers only (emulator stats and database
// rows), that nothing was lost, doubled or dead-lettered.
//
// It talks to the workers only through their process boundary (the
// environment they read, the broker they drain, the rows they write), so it
// keeps working whatever shape the workflows take inside.
//
// The short run is TestChaosShort (normal `go test`); the full one is
// `make chaos` (go test -tags chaos -run TestChaos ./internal/chaos).
package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/devstack"
	"github.com/syncbridge/syncbridge/internal/drainaudit"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

// Plan is one chaos run.
type Plan struct {
	Messages int
	// Workers is how many worker processes run at once.
	Workers int
	// Kills SIGKILL a worker (and start a replacement) when this share of
	// the messages has been acked, one kill per entry.
	Kills []float64
	// CutAt is the acked share at which the database is cut for CutFor.
	CutAt  float64
	CutFor time.Duration
	Faults mqemu.Faults
	// InvisibleTime of the emulator: how soon a killed worker's messages
	// come back.
	InvisibleTime time.Duration
	Timeout       time.Duration
	// RestartTemporalAt is the acked share at which the Temporal server
	// is stopped and started again on the same address and SQLite file;
	// zero runs no restart. The run then uses its own server instead of
	// the test binary's shared in-memory one.
	RestartTemporalAt float64
}

// Report is what a run found.
type Report struct {
	RowsExpected, RowsStored int
	Doubled                  int // keys with more than one row, or a version stored twice
	Lost                     int // versions neither stored nor in conflicts
	ExtraDeliveries          int // deliveries beyond one per message (duplicates, redeliveries)
	Quarantined, BadExpected int
	Conflicts                int
	Published, Acked         int
	DeadLettered             int
	Kills                    int
	TemporalRestarts         int
	LongestStall             time.Duration
	Took                     time.Duration
}

func (r Report) String() string {
	return fmt.Sprintf("rows expected %d stored %d | doubled %d lost %d | extra deliveries (duplicates/redeliveries) %d | quarantined %d (expected %d) | conflicts %d | published %d acked %d | dead-lettered %d | worker kills %d, Temporal restarts %d | longest stall %s | took %s",
		r.RowsExpected, r.RowsStored, r.Doubled, r.Lost, r.ExtraDeliveries, r.Quarantined, r.BadExpected, r.Conflicts,
		r.Published, r.Acked, r.DeadLettered, r.Kills, r.TemporalRestarts, r.LongestStall.Round(100*time.Millisecond), r.Took.Round(time.Second))
}

// Run executes plan and fails t on any loss, doubling or dead letter.
func Run(t *testing.T, plan Plan) Report {
	t.Helper()
	start := time.Now()
	env := testenv.New(t, testenv.Options{MQ: mqemu.Config{InvisibleTime: plan.InvisibleTime, Seed: 5}})
	env.Topic = "chaos-" + randHex(4)
	env.MQ.CreateTopic(env.Topic)

	dbCfg, err := mysql.ParseDSN(env.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.Start(dbCfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	dbCfg.Addr = proxy.Addr()
	dbCfg.Timeout, dbCfg.ReadTimeout, dbCfg.WriteTimeout = 2*time.Second, 5*time.Second, 5*time.Second

	if plan.RestartTemporalAt > 0 {
		ownTemporal(t, env)
	}
	bin := testenv.WorkerBinary(t)
	vars := []string{
		"ROCKETMQ_ENDPOINT=" + env.MQURL,
		"ALIBABA_ACCESS_KEY=" + env.AccessKey,
		"ALIBABA_SECRET_KEY=" + env.SecretKey,
		"ROCKETMQ_INSTANCE_ID=" + env.InstanceID,
		"ROCKETMQ_TOPIC=" + env.Topic,
		"ROCKETMQ_GROUP_ID=" + env.Group,
		"POLARDB_DSN=" + dbCfg.FormatDSN(),
		"TEMPORAL_ADDRESS=" + env.TemporalAddr,
		"TEMPORAL_NAMESPACE=" + env.Namespace,
		"SYNCBRIDGE_TASK_QUEUE=" + env.TaskQueue,
		"SYNCBRIDGE_WORKFLOW_ID_PREFIX=" + env.TaskQueue + "/",
		"SYNCBRIDGE_POLLERS=4",
		"SYNCBRIDGE_POLL_WAIT=2s",
		"SYNCBRIDGE_METRICS_ADDR=off",
		"SYNCBRIDGE_ACK_FLUSH=20ms",
		// Info, not warn: the fleet waits for each replacement's
		// "worker running" line (fleet.waitRunning), in JSON.
		"SYNCBRIDGE_LOG_LEVEL=info",
		"SYNCBRIDGE_LOG_FORMAT=json",
	}
	if env.PayloadKey != "" { // encrypted, as production runs
		vars = append(vars, "SYNCBRIDGE_PAYLOAD_KEY="+env.PayloadKey, "SYNCBRIDGE_PAYLOAD_KEY_ID="+env.PayloadKeyID)
	} else {
		vars = append(vars, "SYNCBRIDGE_PAYLOAD_PLAINTEXT=true")
	}
	logDir := t.TempDir()
	fleet := &fleet{t: t, bin: bin, env: vars, logDir: logDir, failed: make(chan string, 64)}
	t.Cleanup(fleet.stopAll)
	t.Cleanup(func() { terminatePollers(env) })

	msgs := generate(plan.Messages)
	publish(t, env, msgs)
	env.MQ.SetFaults(plan.Faults)
	for range plan.Workers {
		fleet.start()
	}

	var rep Report
	for _, m := range msgs {
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) {
			rep.BadExpected++
		}
	}

	// Watch progress; break things at the planned moments.
	deadline := time.Now().Add(plan.Timeout)
	kills := append([]float64(nil), plan.Kills...)
	cut := plan.CutFor > 0
	restartTemporal := plan.RestartTemporalAt > 0
	var restoreAt time.Time
	lastAcked, lastProgress := -1, time.Now()
	for {
		select {
		case why := <-fleet.failed:
			// A worker that exits by itself (bad configuration, a failed
			// start) would otherwise show up only as a drain that never
			// ends.
			fleet.dumpLogs()
			t.Fatalf("chaos: %s", why)
		default:
		}
		st := env.MQ.Stats(env.Topic, env.Group)
		now := time.Now()
		if st.Acked != lastAcked {
			lastAcked, lastProgress = st.Acked, now
		} else if stall := now.Sub(lastProgress); stall > rep.LongestStall {
			rep.LongestStall = stall
		}
		done := float64(st.Acked) / float64(len(msgs))
		if len(kills) > 0 && done >= kills[0] {
			kills = kills[1:]
			fleet.killOne()
			rep.Kills++
			fleet.start()
			// The next fault waits until the replacement runs: a worker
			// that finds the database cut while starting exits (its
			// supervisor restarts it in production), which this fleet
			// would report as a failure of its own.
			fleet.waitRunning(2 * time.Minute)
		}
		if cut && done >= plan.CutAt {
			cut = false
			t.Logf("chaos: cutting the database for %s at %.0f%% acked", plan.CutFor, 100*done)
			proxy.Cut()
			restoreAt = now.Add(plan.CutFor)
		}
		if restartTemporal && done >= plan.RestartTemporalAt {
			restartTemporal = false
			t.Logf("chaos: restarting the Temporal server at %.0f%% acked", 100*done)
			restartOwnTemporal(t)
			rep.TemporalRestarts++
		}
		if !restoreAt.IsZero() && now.After(restoreAt) {
			proxy.Restore()
			restoreAt = time.Time{}
			t.Log("chaos: database restored")
		}
		if st.Published == len(msgs) && st.Ready == 0 && st.InFlight == 0 && len(kills) == 0 && !cut && !restartTemporal && restoreAt.IsZero() &&
			runningRecords(t, env) == 0 {
			break
		}
		if st.DeadLettered > 0 {
			break // the check below reports it
		}
		if now.After(deadline) {
			fleet.dumpLogs()
			t.Fatalf("chaos: not drained after %s: %+v", plan.Timeout, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	fleet.stopAll()

	st := env.MQ.Stats(env.Topic, env.Group)
	rep.Published, rep.Acked, rep.DeadLettered = st.Published, st.Acked, st.DeadLettered
	rep.ExtraDeliveries = st.Delivered - st.Published
	check(t, env.DB, msgs, &rep)
	rep.Took = time.Since(start)
	t.Logf("chaos report: %s", rep)
	fmt.Fprintf(os.Stderr, "chaos report: %s\n", rep)
	if rep.Lost > 0 || rep.Doubled > 0 || rep.DeadLettered > 0 || rep.RowsStored != rep.RowsExpected ||
		rep.Quarantined != rep.BadExpected || rep.Acked != rep.Published {
		fleet.dumpLogs()
		t.Fatalf("chaos: the drain was not exact: %s", rep)
	}
	return rep
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// generate is a realistic batch: republished keys (duplicates and
// conflicts) and malformed messages. Invalid UTF-8 cannot cross the HTTP
// API intact, so those are left out.
func generate(n int) []syncevent.OutMessage {
	var out []syncevent.OutMessage
	for _, m := range syncevent.Generate(syncevent.GenOptions{
		Count: n, DistinctKeys: n * 4 / 5, ChangedRate: 0.25, BadRate: 0.02, Seed: 2026, KeyPrefix: "chaos-" + randHex(3) + "-",
	}) {
		if m.Kind != syncevent.KindBadPrefix+syncevent.ReasonInvalidUTF8 {
			out = append(out, m)
		}
	}
	return out
}

func publish(t *testing.T, env *testenv.Env, msgs []syncevent.OutMessage) {
	t.Helper()
	prod := mqclient.NewProducer(mqclient.Endpoint{URL: env.MQURL, AccessKey: env.AccessKey, SecretKey: env.SecretKey, InstanceID: env.InstanceID}, env.Topic)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(msgs); i += 8 {
				if _, err := prod.Publish(context.Background(), msgs[i].Key, msgs[i].Tag, msgs[i].Body); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func runningRecords(t *testing.T, env *testenv.Env) int64 {
	resp, err := env.Client.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("%s AND ExecutionStatus = 'Running' AND TaskQueue = '%s'", contract.RecordTypesQuery, env.TaskQueue),
	})
	if err != nil {
		t.Logf("chaos: count running records: %v", err)
		return -1
	}
	return resp.GetCount()
}

func terminatePollers(env *testenv.Env) {
	for i := range 8 {
		_ = env.Client.TerminateWorkflow(context.Background(), contract.PollerWorkflowID(env.Topic, env.Group, i), "", "chaos run over")
	}
}

// check compares the database with what the generator published
// (internal/drainaudit: every key one row, every other version of it a
// conflict) and counts the quarantined messages.
func check(t *testing.T, db *sql.DB, msgs []syncevent.OutMessage, rep *Report) {
	t.Helper()
	res, err := drainaudit.Audit(context.Background(), db, msgs, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range res.Unknown {
		t.Errorf("key %s holds a version nobody published", k)
	}
	rep.RowsExpected, rep.RowsStored, rep.Conflicts = res.RowsExpected, res.RowsStored, res.Conflicts
	rep.Doubled, rep.Lost = res.Doubled, res.Lost
	if rep.Quarantined, err = drainaudit.Quarantined(context.Background(), db); err != nil {
		t.Fatal(err)
	}
}

// fleet is the worker processes of a run.
type fleet struct {
	t      *testing.T
	bin    string
	env    []string
	logDir string

	mu    sync.Mutex
	procs []*exec.Cmd
	logs  []string
	n     int
	// failed receives a line for every worker that exited with an error
	// of its own (not killed by the fleet).
	failed chan string
}

func (f *fleet) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	logPath := filepath.Join(f.logDir, fmt.Sprintf("worker-%d.log", f.n))
	logf, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(f.bin)
	cmd.Env = append(os.Environ(), f.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	n := f.n
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		if st := cmd.ProcessState; err != nil && st != nil && st.Exited() && st.ExitCode() != 0 {
			select {
			case f.failed <- fmt.Sprintf("worker %d exited by itself: %v", n, err):
			default:
			}
		}
	}()
	f.procs = append(f.procs, cmd)
	f.logs = append(f.logs, logPath)
	f.t.Logf("chaos: started worker %d (pid %d)", f.n, cmd.Process.Pid)
}

// waitRunning waits until the newest worker has logged that it runs.
func (f *fleet) waitRunning(timeout time.Duration) {
	f.mu.Lock()
	logPath := f.logs[len(f.logs)-1]
	f.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(logPath); err == nil && bytes.Contains(b, []byte(`"msg":"worker running"`)) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Logf("chaos: worker %d not running after %s; going on", f.n, timeout)
}

// killOne SIGKILLs the oldest live worker: no graceful stop, its in-flight
// activities and unacked messages are simply gone.
func (f *fleet) killOne() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.procs {
		if p == nil {
			continue
		}
		_ = p.Process.Signal(syscall.SIGKILL)
		f.t.Logf("chaos: SIGKILLed worker pid %d", p.Process.Pid)
		f.procs[i] = nil
		return
	}
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.procs {
		if p == nil {
			continue
		}
		// The run is over; graceful stops would only take time.
		_ = p.Process.Signal(syscall.SIGKILL)
		f.procs[i] = nil
	}
}

func (f *fleet) dumpLogs() {
	for _, path := range f.logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if len(b) > 8<<10 {
			b = b[len(b)-8<<10:]
		}
		f.t.Logf("--- %s (tail) ---\n%s", filepath.Base(path), b)
	}
}

// own is the run's own Temporal server, when the plan restarts it.
var own struct {
	mu   sync.Mutex
	tp   *devstack.Temporal
	opts devstack.TemporalOptions
}

// ownTemporal starts a Temporal server on a SQLite file for this run and
// points env (and so the workers) at it.
func ownTemporal(t *testing.T, env *testenv.Env) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	own.mu.Lock()
	defer own.mu.Unlock()
	own.opts = devstack.TemporalOptions{
		FrontendAddr:     addr,
		DBPath:           filepath.Join(t.TempDir(), "temporal.db"),
		SearchAttributes: searchattr.All(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	own.tp, err = devstack.StartTemporal(ctx, own.opts)
	if err != nil {
		t.Fatalf("chaos: own Temporal server: %v", err)
	}
	t.Cleanup(func() {
		own.mu.Lock()
		defer own.mu.Unlock()
		if own.tp != nil {
			_ = own.tp.Stop()
		}
	})
	c, err := client.Dial(client.Options{HostPort: own.tp.Address(), Namespace: own.tp.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	env.TemporalAddr, env.Namespace, env.Client = own.tp.Address(), own.tp.Namespace(), c
}

// restartOwnTemporal stops the run's server and starts it again on the
// same address and file: workers see their connections drop and must
// carry on when it is back.
func restartOwnTemporal(t *testing.T) {
	t.Helper()
	own.mu.Lock()
	defer own.mu.Unlock()
	if err := own.tp.Stop(); err != nil {
		t.Logf("chaos: stop Temporal: %v", err)
	}
	own.tp = nil
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp, err := devstack.StartTemporal(ctx, own.opts)
	if err != nil {
		t.Fatalf("chaos: restart Temporal: %v", err)
	}
	own.tp = tp
	t.Log("chaos: Temporal server back")
}
