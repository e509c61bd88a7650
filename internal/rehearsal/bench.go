package rehearsal

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/histcost"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/proccpu"
)

// BenchOptions are bench's.
type BenchOptions struct {
	Dir      string
	Messages int
	DupRate  float64
	Timeout  time.Duration
	Out      io.Writer
}

// BenchPhase is one drain of the benchmark.
type BenchPhase struct {
	Name     string
	Workers  int
	Flood    bool
	Messages int
	Took     time.Duration // first ack to the last
	Polled   []int         // messages each worker polled
	Cost     histcost.Cost
	CostRuns int
	// CPU is what each process took from the workers' start to the
	// drained check (workers: all of the phase's worker processes).
	CPU []proccpu.Usage
}

// Rate is messages per second; 0 when the drain ended within one sample of
// the broker's counters (200 ms): too short to time.
func (p BenchPhase) Rate() float64 {
	if p.Took <= 0 {
		return 0
	}
	return float64(p.Messages) / p.Took.Seconds()
}

// Bench drains the same kind of backlog with 1, 2 and 3 workers on the
// per-key path, then with 3 in flood mode. Each phase publishes with the
// workers stopped and times from the first ack to the last, so start-up is
// left out, as in the embedded-server benchmark (internal/workerapp).
func Bench(ctx context.Context, o BenchOptions) ([]BenchPhase, error) {
	c, err := loadCluster(o.Dir)
	if err != nil {
		return nil, err
	}
	workers := c.workerNames()
	if len(workers) < 3 {
		return nil, fmt.Errorf("rehearsal: bench needs 3 workers (up --workers 3), this rehearsal has %d", len(workers))
	}
	env := map[string]string{}
	for _, kv := range c.state.Export {
		env[kv[0]] = kv[1]
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "%s bench: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
	if err := setMQFaults(o.DupRate); err != nil {
		return nil, err
	}
	tc, err := client.Dial(client.Options{HostPort: FrontendAddr, Namespace: Namespace, Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	prod := mqclient.NewProducer(mqclient.Endpoint{URL: env["ROCKETMQ_ENDPOINT"], AccessKey: env["ALIBABA_ACCESS_KEY"],
		SecretKey: env["ALIBABA_SECRET_KEY"], InstanceID: env["ROCKETMQ_INSTANCE_ID"]}, Topic)

	setFlood := func(flood bool) {
		for _, w := range workers {
			sp := c.state.Specs[w]
			var e []string
			for _, kv := range sp.Env {
				if !strings.HasPrefix(kv, "SYNCBRIDGE_FLOOD_MODE=") {
					e = append(e, kv)
				}
			}
			sp.Env = append(e, "SYNCBRIDGE_FLOOD_MODE="+strconv.FormatBool(flood))
			c.state.Specs[w] = sp
		}
	}
	stopWorkers := func() error { return c.stopTogether(workers, syscall.SIGTERM, 100*time.Second) }
	// Whatever happens, the fleet is left as up made it.
	defer func() {
		setFlood(c.state.Flood)
		_ = stopWorkers()
		if err := c.startAll(workers, 90*time.Second); err != nil {
			say("restoring the workers: %v", err)
		}
	}()

	perKey := func(n int) BenchPhase {
		name := fmt.Sprintf("per-key, %d workers", n)
		if n == 1 {
			name = "per-key, 1 worker"
		}
		return BenchPhase{Name: name, Workers: n}
	}
	var out []BenchPhase
	for _, ph := range []BenchPhase{
		// Mirror order, as in the embedded-server benchmark: the
		// cluster's visibility and history tables grow with every drain
		// and a later phase drains a little slower, so the last of
		// 1, 2, 3 workers looked worst for that alone (0.67-0.97 of one
		// worker's rate in three runs, 11:29-11:58 UTC). Run twice in
		// mirror order, each fleet size sits at the same mean position.
		perKey(1), perKey(2), perKey(3), perKey(3), perKey(2), perKey(1),
		// Three times the backlog, as the embedded-server benchmark does:
		// at flood speed the small one lasts about two seconds.
		{Name: "flood, 3 workers", Workers: 3, Flood: true, Messages: 3},
	} {
		if err := stopWorkers(); err != nil {
			return out, err
		}
		before, err := mqStats()
		if err != nil {
			return out, err
		}
		if before.Ready+before.InFlight > 0 {
			return out, fmt.Errorf("rehearsal: the topic holds %d messages before %s", before.Ready+before.InFlight, ph.Name)
		}
		prefix := "bench-" + randHex(3) + "-"
		msgs := drillMessages(o.Messages*max(1, ph.Messages), prefix)
		ph.Messages = len(msgs)
		say("%s: publishing %d messages with the workers stopped", ph.Name, len(msgs))
		if err := publishAll(ctx, prod, msgs); err != nil {
			return out, err
		}
		setFlood(ph.Flood)
		tr := &tracker{base: before.Acked}
		sctx, stopSampler := context.WithCancel(ctx)
		go tr.run(sctx)
		// The workers are not running yet: their CPU counts from their
		// start (connecting included), the others' from now.
		cpuBefore := c.fleetMeter(nil).Snapshot()
		if err := c.startAll(workers[:ph.Workers], 90*time.Second); err != nil {
			stopSampler()
			return out, err
		}
		deadline := time.Now().Add(o.Timeout)
		for !tr.drained(len(msgs)) {
			if time.Now().After(deadline) {
				stopSampler()
				return out, fmt.Errorf("rehearsal: %s not drained after %s (%d of %d acked)", ph.Name, o.Timeout, tr.acked(), len(msgs))
			}
			time.Sleep(100 * time.Millisecond)
		}
		stopSampler()
		ph.CPU = c.fleetMeter(workers[:ph.Workers]).Since(cpuBefore)
		ph.Took = tr.activeSpan()
		for runningRecords(ctx, tc) != 0 {
			time.Sleep(500 * time.Millisecond)
		}
		if ph.CostRuns, ph.Cost, err = historyCosts(ctx, tc, prefix, 200); err != nil {
			say("history costs not counted: %v", err)
		}
		// The workers' metrics reach /metrics once a second (tally's
		// reporting interval): a flood drain can be over before.
		time.Sleep(1500 * time.Millisecond)
		for _, w := range workers[:ph.Workers] {
			addr := c.state.Specs[w].Ports[0]
			n := metric(addr, "syncbridge_messages_polled_total")
			if ph.Flood {
				// Flood mode's own poll loop counts its messages by
				// the path it sent them on.
				n = metricSum(addr, "syncbridge_flood_messages_total")
			}
			ph.Polled = append(ph.Polled, n)
		}
		if ph.Rate() > 0 {
			say("%s: %d messages in %s: %.1f msg/s; polled per worker %v; cpu %s", ph.Name, ph.Messages, ph.Took.Round(100*time.Millisecond), ph.Rate(), ph.Polled, proccpu.Format(ph.CPU))
		} else {
			say("%s: %d messages drained within one 200 ms sample: too short to time (publish more: --messages); polled per worker %v", ph.Name, ph.Messages, ph.Polled)
		}
		out = append(out, ph)
	}
	return out, nil
}

// PerKeyRates is the per-key rate of each fleet size over all its runs:
// their messages over their drain time.
func PerKeyRates(phases []BenchPhase) map[int]float64 {
	msgs, took := map[int]int{}, map[int]time.Duration{}
	for _, p := range phases {
		if !p.Flood && p.Rate() > 0 {
			msgs[p.Workers] += p.Messages
			took[p.Workers] += p.Took
		}
	}
	out := map[int]float64{}
	for n, m := range msgs {
		out[n] = float64(m) / took[n].Seconds()
	}
	return out
}

// BenchTable formats the phases, each run "vs 1 worker" against one
// worker's rate over all its runs, and then each fleet size over all its
// runs.
func BenchTable(phases []BenchPhase) string {
	var b strings.Builder
	b.WriteString("| phase | messages | drain | msg/s | vs 1 worker | polled per worker | events/run | actions/run | CPU seconds |\n|---|---|---|---|---|---|---|---|---|\n")
	rates := PerKeyRates(phases)
	one := rates[1]
	for _, p := range phases {
		ev, ac := "-", "-"
		if p.CostRuns > 0 {
			ev = fmt.Sprintf("%.2f", float64(p.Cost.Events)/float64(p.CostRuns))
			ac = fmt.Sprintf("%.2f", float64(p.Cost.Actions)/float64(p.CostRuns))
		}
		rel, rate, took := "-", "-", "under 0.2s"
		if p.Rate() > 0 {
			rate, took = fmt.Sprintf("%.1f", p.Rate()), p.Took.Round(100*time.Millisecond).String()
			if one > 0 {
				rel = fmt.Sprintf("%.2f", p.Rate()/one)
			}
		}
		cpu := proccpu.Format(p.CPU)
		if cpu == "" {
			cpu = "-"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %v | %s | %s | %s |\n", p.Name, p.Messages, took, rate, rel, p.Polled, ev, ac, cpu)
	}
	if one > 0 {
		b.WriteString("\nper-key over all runs of each fleet size:")
		for _, n := range slices.Sorted(maps.Keys(rates)) {
			fmt.Fprintf(&b, " %d worker(s) %.1f msg/s (%.2f)", n, rates[n], rates[n]/one)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// activeSpan is the time from the first ack to the last.
func (t *tracker) activeSpan() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first, last time.Time
	prev := 0
	for i, n := range t.n {
		if n > 0 && first.IsZero() {
			first = t.ts[i]
		}
		if n != prev {
			last, prev = t.ts[i], n
		}
	}
	return last.Sub(first)
}

// metricSum adds up every series of a counter, labelled or not, from a
// worker's /metrics; 0 when absent.
func metricSum(addr, name string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return int(sum)
}

// metric reads one unlabelled counter from a worker's /metrics; 0 when
// absent.
func metric(addr, name string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return int(v)
		}
	}
	return 0
}

// fleetMeter meters the fleet's processes: the given workers together,
// the Temporal server and the emulator by PID, every PostgreSQL and
// MariaDB process by name (see internal/proccpu for what that misses).
func (c *cluster) fleetMeter(workers []string) *proccpu.Meter {
	g := func(name string, names ...string) proccpu.Group {
		gr := proccpu.Group{Name: name}
		for _, n := range names {
			if pid, ok := c.pids[n]; ok {
				gr.PIDs = append(gr.PIDs, pid)
			}
		}
		return gr
	}
	pat := func(name, re string) proccpu.Group {
		gs, _ := proccpu.Parse(name + "=~" + re)
		return gs[0]
	}
	return &proccpu.Meter{Root: "/proc", Groups: []proccpu.Group{
		g("workers", workers...), g("temporal", "temporal"), pat("postgres", "postgres"), pat("mariadb", "mariadbd|mysqld"), g("mqemu", "mqemu"),
	}}
}
