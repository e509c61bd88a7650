package rehearsal

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/drainaudit"
	"github.com/syncbridge/syncbridge/internal/histcost"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Faults the drill knows, in the order a full drill breaks things.
var AllFaults = []string{"kill-worker", "rolling-restart", "kill-temporal", "restart-postgres", "cut-db", "restart-mq"}

// DrillOptions are drill's.
type DrillOptions struct {
	Dir      string
	Messages int
	// Faults are names from AllFaults, run one after the other while the
	// backlog drains, each once the previous one has recovered.
	Faults []string
	// DupRate is the broker's duplicate delivery (the benchmark's 5%).
	DupRate float64
	// CutFor is how long cut-db keeps the database away.
	CutFor  time.Duration
	Timeout time.Duration
	MySQL   string // root access to the app database, for the audit
	Out     io.Writer
}

// FaultResult is one fault's effect on the drain.
type FaultResult struct {
	Name     string
	At       float64       // acked share when it started
	Took     time.Duration // the fault itself (a rolling restart takes a while)
	PreRate  float64       // acks/s in the 10 s before
	Recovery time.Duration // from its start to the 5 s rate back at 80% of PreRate; <0: never
	Note     string
}

// DrillReport is what drill prints.
type DrillReport struct {
	drainaudit.Result
	Published, Acked, DeadLettered, Quarantined, ExtraDeliveries int
	LongestStall, Took                                           time.Duration
	Faults                                                       []FaultResult
	// Cost is what CostRuns closed record runs of the drill cost, read
	// from their histories (faults included: retries show here).
	Cost     histcost.Cost
	CostRuns int
	Failures []string
}

// Drill publishes a backlog of the benchmark's mix and breaks the
// rehearsal's processes one after the other while it drains; it fails on
// any loss, doubling, dead letter or fault that could not run.
func Drill(ctx context.Context, o DrillOptions) (DrillReport, error) {
	var rep DrillReport
	start := time.Now()
	c, err := loadCluster(o.Dir)
	if err != nil {
		return rep, err
	}
	if len(c.workerNames()) == 0 {
		return rep, fmt.Errorf("rehearsal: drill needs workers; this rehearsal was started with --workers 0")
	}
	for _, f := range o.Faults {
		if !contains(AllFaults, f) {
			return rep, fmt.Errorf("rehearsal: unknown fault %q (known: %s)", f, strings.Join(AllFaults, ","))
		}
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "%s drill: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
	env := map[string]string{}
	for _, kv := range c.state.Export {
		env[kv[0]] = kv[1]
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", o.MySQL, AppDB
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return rep, err
	}
	defer db.Close()
	// The workers create the tables on start; up waited for them.
	quarantinedBefore, err := drainaudit.Quarantined(ctx, db)
	if err != nil {
		return rep, err
	}
	before, err := mqStats()
	if err != nil {
		return rep, fmt.Errorf("rehearsal: the emulator does not answer (is the rehearsal up?): %w", err)
	}
	if before.Ready+before.InFlight > 0 {
		return rep, fmt.Errorf("rehearsal: the topic still holds %d messages: drill needs a drained pipeline", before.Ready+before.InFlight)
	}
	if err := setMQFaults(o.DupRate); err != nil {
		return rep, err
	}

	prefix := "drill-" + randHex(3) + "-"
	msgs := drillMessages(o.Messages, prefix)
	say("publishing %d messages (keys %s*; 80%% distinct keys, 20%% changed payloads, 1%% malformed; the broker delivers %.0f%% twice)",
		len(msgs), prefix, 100*o.DupRate)
	prod := mqclient.NewProducer(mqclient.Endpoint{URL: env["ROCKETMQ_ENDPOINT"], AccessKey: env["ALIBABA_ACCESS_KEY"],
		SecretKey: env["ALIBABA_SECRET_KEY"], InstanceID: env["ROCKETMQ_INSTANCE_ID"]}, Topic)
	if err := publishAll(ctx, prod, msgs); err != nil {
		return rep, err
	}

	// The sampler: acked count over time, the drain's clock.
	tr := &tracker{base: before.Acked}
	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	go tr.run(sctx)

	// Faults, one after the other, each when its share of the backlog is
	// acked and the previous one has recovered.
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		for i, name := range o.Faults {
			at := faultAt(i, len(o.Faults))
			for tr.share(len(msgs)) < at && !tr.drained(len(msgs)) && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			fr := FaultResult{Name: name, At: tr.share(len(msgs)), PreRate: tr.rate(10 * time.Second)}
			if tr.drained(len(msgs)) {
				fr.Note = "not run: the backlog drained first"
				fr.Recovery = -1
				rep.Faults = append(rep.Faults, fr)
				continue
			}
			say("%s at %.0f%% acked (%.1f acks/s before)", name, 100*fr.At, fr.PreRate)
			t0 := time.Now()
			if err := c.fault(ctx, name, o, say); err != nil {
				fr.Note = "failed: " + err.Error()
				say("%s failed: %v", name, err)
			}
			fr.Took = time.Since(t0)
			fr.Recovery = -1
			for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(250 * time.Millisecond) {
				// The rate is judged over a window wholly after the fault
				// ended: one that overlaps it still holds the pre-fault acks.
				if time.Since(t0) > fr.Took+5*time.Second && tr.rate(5*time.Second) >= 0.8*fr.PreRate {
					fr.Recovery = time.Since(t0)
					break
				}
				if tr.drained(len(msgs)) {
					fr.Note = "the backlog drained before the rate was measured again"
					break
				}
				// The faults after this one must still find a backlog to
				// break: past the next one's share plus 15% (80% at
				// most), it runs and this measurement ends.
				if next := i + 1; next < len(o.Faults) && tr.share(len(msgs)) >= min(0.8, faultAt(next, len(o.Faults))+0.15) {
					fr.Note = "measurement cut short: the next fault was due"
					break
				}
			}
			say("%s: took %s, back to 80%% of the rate after %s", name, fr.Took.Round(100*time.Millisecond), fmtRecovery(fr.Recovery))
			rep.Faults = append(rep.Faults, fr)
		}
	}()

	tc, err := client.Dial(client.Options{HostPort: FrontendAddr, Namespace: Namespace, Logger: quietLogger{}})
	if err != nil {
		return rep, err
	}
	defer tc.Close()
	deadline := time.Now().Add(o.Timeout)
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(time.Second):
		}
		faultsOver := false
		select {
		case <-faultsDone:
			faultsOver = true
		default:
		}
		if time.Since(lastReport) > 30*time.Second {
			lastReport = time.Now()
			say("%d of %d acked", tr.acked(), len(msgs))
		}
		if faultsOver && tr.drained(len(msgs)) && runningRecords(ctx, tc) == 0 {
			break
		}
		if time.Now().After(deadline) {
			rep.Failures = append(rep.Failures, fmt.Sprintf("not drained after %s (%d of %d acked)", o.Timeout, tr.acked(), len(msgs)))
			break
		}
	}
	<-faultsDone
	stopSampler()

	after, err := mqStats()
	if err != nil {
		return rep, err
	}
	rep.Published, rep.Acked = after.Published-before.Published, after.Acked-before.Acked
	rep.DeadLettered = after.DeadLettered - before.DeadLettered
	rep.ExtraDeliveries = after.Delivered - before.Delivered - rep.Published
	if rep.Result, err = drainaudit.Audit(ctx, db, msgs, prefix); err != nil {
		return rep, err
	}
	q, err := drainaudit.Quarantined(ctx, db)
	if err != nil {
		return rep, err
	}
	rep.Quarantined = q - quarantinedBefore
	rep.LongestStall = tr.longestStall()
	rep.Took = time.Since(start)
	if rep.CostRuns, rep.Cost, err = historyCosts(ctx, tc, prefix, 200); err != nil {
		say("history costs not counted: %v", err)
	}

	for _, f := range rep.Faults {
		if strings.HasPrefix(f.Note, "not run") || strings.HasPrefix(f.Note, "failed") {
			rep.Failures = append(rep.Failures, f.Name+" "+f.Note)
		}
	}
	check := func(bad bool, format string, args ...any) {
		if bad {
			rep.Failures = append(rep.Failures, fmt.Sprintf(format, args...))
		}
	}
	check(rep.Lost > 0, "%d versions lost", rep.Lost)
	check(rep.Doubled > 0, "%d versions doubled (unknown keys: %v)", rep.Doubled, rep.Unknown)
	check(rep.DeadLettered > 0, "%d messages dead-lettered", rep.DeadLettered)
	check(rep.RowsStored != rep.RowsExpected, "%d rows stored, %d expected", rep.RowsStored, rep.RowsExpected)
	check(rep.Quarantined != rep.BadExpected, "%d quarantined, %d malformed published", rep.Quarantined, rep.BadExpected)
	check(rep.Acked != rep.Published || rep.Published != len(msgs), "%d published (%d sent), %d acked", rep.Published, len(msgs), rep.Acked)
	return rep, nil
}

func (r DrillReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rows expected %d, stored %d | lost %d | doubled %d | conflicts %d | quarantined %d (malformed published %d)\n",
		r.RowsExpected, r.RowsStored, r.Lost, r.Doubled, r.Conflicts, r.Quarantined, r.BadExpected)
	fmt.Fprintf(&b, "published %d, acked %d, dead-lettered %d, extra deliveries (duplicates, redeliveries) %d\n",
		r.Published, r.Acked, r.DeadLettered, r.ExtraDeliveries)
	fmt.Fprintf(&b, "longest stall %s, drill took %s\n", r.LongestStall.Round(100*time.Millisecond), r.Took.Round(time.Second))
	if r.CostRuns > 0 {
		fmt.Fprintf(&b, "history: %.2f events and %.2f billable actions per record run (%d runs sampled)\n",
			float64(r.Cost.Events)/float64(r.CostRuns), float64(r.Cost.Actions)/float64(r.CostRuns), r.CostRuns)
	}
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %-17s at %3.0f%% acked, pre-fault %6.1f acks/s, fault took %7s, back to 80%% after %s",
			f.Name, 100*f.At, f.PreRate, f.Took.Round(100*time.Millisecond), fmtRecovery(f.Recovery))
		if f.Note != "" {
			b.WriteString(" (" + f.Note + ")")
		}
		b.WriteString("\n")
	}
	if len(r.Failures) == 0 {
		b.WriteString("PASS: nothing lost, nothing doubled, nothing dead-lettered\n")
	} else {
		b.WriteString("FAIL: " + strings.Join(r.Failures, "; ") + "\n")
	}
	return b.String()
}

func fmtRecovery(d time.Duration) string {
	if d < 0 {
		return "never (within 3 min)"
	}
	return d.Round(100 * time.Millisecond).String()
}

// fault breaks one thing and mends it.
func (c *cluster) fault(ctx context.Context, name string, o DrillOptions, say func(string, ...any)) error {
	switch name {
	case "kill-worker":
		w := c.workerNames()[0]
		if err := c.stop(w, syscall.SIGKILL, 0); err != nil {
			return err
		}
		return c.start(w, 90*time.Second)
	case "rolling-restart":
		for _, w := range c.workerNames() {
			say("rolling restart: SIGTERM %s", w)
			// The worker's own grace is 90 s for in-flight activities.
			if err := c.stop(w, syscall.SIGTERM, 100*time.Second); err != nil {
				return err
			}
			if err := c.start(w, 90*time.Second); err != nil {
				return err
			}
		}
		return nil
	case "kill-temporal":
		if err := c.stop("temporal", syscall.SIGKILL, 0); err != nil {
			return err
		}
		if err := c.start("temporal", 90*time.Second); err != nil {
			return err
		}
		return waitHealthy(ctx, FrontendAddr)
	case "restart-postgres":
		ver, cl, _ := strings.Cut(c.state.PGCluster, "/")
		out, err := exec.CommandContext(ctx, "pg_ctlcluster", "--skip-systemctl-redirect", ver, cl, "restart").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctlcluster %s restart: %v: %s", c.state.PGCluster, err, strings.TrimSpace(string(out)))
		}
		return nil
	case "cut-db":
		pid := c.pids["dbproxy"]
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return err
		}
		time.Sleep(o.CutFor)
		return syscall.Kill(pid, syscall.SIGUSR2)
	case "restart-mq":
		if err := c.stop("mqemu", syscall.SIGTERM, 15*time.Second); err != nil {
			return err
		}
		if err := c.start("mqemu", 60*time.Second); err != nil {
			return err
		}
		// Faults are the emulator's runtime settings, not its snapshot.
		return setMQFaults(o.DupRate)
	}
	return fmt.Errorf("unknown fault %q", name)
}

// faultAt is the acked share at which fault i of n starts: spread over
// 10-80% of the backlog, so the first has a rate to compare with and the
// last a backlog to break.
func faultAt(i, n int) float64 { return 0.1 + 0.7*float64(i)/float64(n) }

// drillMessages is the benchmark's backlog (benchData in
// internal/workerapp): 80% distinct keys, 20% changed payloads, 1%
// malformed, without invalid UTF-8, which cannot cross the HTTP API.
// publishAll publishes msgs from 8 goroutines (one by one, 20,000 take
// minutes) and returns the first error.
func publishAll(ctx context.Context, prod *mqclient.SDKProducer, msgs []syncevent.OutMessage) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(msgs); i += 8 {
				if _, err := prod.Publish(ctx, msgs[i].Key, msgs[i].Tag, msgs[i].Body); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil once closed and empty
}

func drillMessages(n int, prefix string) []syncevent.OutMessage {
	var out []syncevent.OutMessage
	for _, m := range syncevent.Generate(syncevent.GenOptions{
		Count: n, DistinctKeys: n * 4 / 5, ChangedRate: 0.2, BadRate: 0.01, Seed: time.Now().UnixNano(), KeyPrefix: prefix,
	}) {
		if m.Kind != syncevent.KindBadPrefix+syncevent.ReasonInvalidUTF8 {
			out = append(out, m)
		}
	}
	return out
}

// tracker samples the broker's acked count every 200 ms.
type tracker struct {
	base int
	mu   sync.Mutex
	ts   []time.Time
	n    []int
	last mqemu.GroupStats
	ok   bool
}

func (t *tracker) run(ctx context.Context) {
	for ctx.Err() == nil {
		if st, err := mqStats(); err == nil {
			t.mu.Lock()
			t.ts, t.n, t.last, t.ok = append(t.ts, time.Now()), append(t.n, st.Acked-t.base), st, true
			t.mu.Unlock()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (t *tracker) acked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.n) == 0 {
		return 0
	}
	return t.n[len(t.n)-1]
}

func (t *tracker) share(total int) float64 { return float64(t.acked()) / float64(total) }

func (t *tracker) drained(total int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ok && len(t.n) > 0 && t.n[len(t.n)-1] >= total && t.last.Ready == 0 && t.last.InFlight == 0
}

// rate is acks per second over the last window (or since the first
// sample, when shorter).
func (t *tracker) rate(window time.Duration) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ts) < 2 {
		return 0
	}
	end := len(t.ts) - 1
	i := end
	for i > 0 && t.ts[end].Sub(t.ts[i-1]) <= window {
		i--
	}
	// A sample gap (the emulator down) counts as time without acks.
	d := time.Since(t.ts[i]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(t.n[end]-t.n[i]) / d
}

// longestStall is the longest time without a new ack, from the first ack
// to the last.
func (t *tracker) longestStall() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var longest time.Duration
	var since time.Time
	last := -1
	for i, n := range t.n {
		if n != last {
			if last > 0 && t.ts[i].Sub(since) > longest {
				longest = t.ts[i].Sub(since)
			}
			last, since = n, t.ts[i]
		}
	}
	return longest
}

func mqStats() (mqemu.GroupStats, error) {
	var st mqemu.GroupStats
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + MQAddr + "/_emulator/stats?topic=" + Topic + "&group=" + Group)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("emulator stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func setMQFaults(dup float64) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+MQAddr+"/_emulator/faults", strings.NewReader(fmt.Sprintf("dup=%g", dup)))
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("rehearsal: set the emulator's faults: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("rehearsal: set the emulator's faults: %s", resp.Status)
	}
	return nil
}

// runningRecords counts record workflows still open; -1 when Temporal
// does not answer (it may be restarting).
func runningRecords(ctx context.Context, tc client.Client) int64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: Namespace,
		Query:     contract.RecordTypesQuery + " AND ExecutionStatus = 'Running'",
	})
	if err != nil {
		return -1
	}
	return resp.GetCount()
}

// historyCosts prices up to limit closed record runs of the drill's keys
// from their histories.
func historyCosts(ctx context.Context, tc client.Client, prefix string, limit int) (int, histcost.Cost, error) {
	var total histcost.Cost
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: Namespace, PageSize: int32(limit),
		Query: contract.RecordTypesQuery + " AND ExecutionStatus != 'Running' AND WorkflowId STARTS_WITH '" + prefix + "'",
	})
	if err != nil {
		return 0, total, err
	}
	runs := 0
	for _, ex := range resp.GetExecutions() {
		var events []*historypb.HistoryEvent
		it := tc.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return runs, total, err
			}
			events = append(events, ev)
		}
		total = total.Add(histcost.Of(events))
		runs++
	}
	return runs, total, nil
}

func waitHealthy(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		tc, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}})
		if err == nil {
			_, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			tc.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Temporal at %s not healthy after restart: %v", addr, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
