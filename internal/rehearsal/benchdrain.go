package rehearsal

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BenchAllOptions are bench's: the fleet phases (Bench), then the
// embedded-server benchmark's drains (internal/workerapp BenchmarkDrain)
// against this cluster's frontend and on the embedded dev server.
type BenchAllOptions struct {
	BenchOptions
	Repo   string // the checkout the benchmark is built from
	BinDir string // where it is built (workerapp.test)
	MySQL  string // MariaDB the benchmark's drains use (root, no password)
	// Parts to run, in this order: "fleet", "cluster", "dev".
	Parts []string
	// DrainMessages, FloodMessages and Exceptions are the benchmark's
	// SYNCBRIDGE_BENCH_MESSAGES, _FLOOD_MESSAGES and _EXCEPTIONS; zero or
	// empty leaves its defaults.
	DrainMessages, FloodMessages int
	Exceptions                   string
	// FloodRounds repeats the flood family's mirror-ordered runs
	// (SYNCBRIDGE_BENCH_FLOOD_ROUNDS); 0 is the benchmark's default.
	FloodRounds int
	// BenchTimeout is the test binary's -test.timeout of each part.
	BenchTimeout time.Duration
}

// BenchParts are bench's parts, in order.
var BenchParts = []string{"fleet", "cluster", "dev"}

// BenchAllResult is what BenchAll measured; a part that did not run is
// empty.
type BenchAllResult struct {
	Fleet        []BenchPhase
	Cluster, Dev Metrics
}

// BenchAll runs the parts of o.Parts. The fleet's workers are stopped
// while the benchmark drains (its worker runs in the benchmark's process)
// and started again at the end. An error in one benchmark part does not
// keep the next from running; every error is returned.
func BenchAll(ctx context.Context, o BenchAllOptions) (BenchAllResult, error) {
	var res BenchAllResult
	var errs []string
	want := map[string]bool{}
	for _, p := range o.Parts {
		want[p] = true
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "%s bench: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
	if want["fleet"] {
		say("part 1 of 3: the fleet's phases (per-key with 1, 2, 3 worker processes, flood with 3)")
		phases, err := Bench(ctx, o.BenchOptions)
		res.Fleet = phases
		if len(phases) > 0 {
			fmt.Fprint(o.Out, "\n"+BenchTable(phases)+"\n")
		}
		if err != nil {
			return res, err
		}
	}
	if !want["cluster"] && !want["dev"] {
		return res, nil
	}
	c, err := loadCluster(o.Dir)
	if err != nil {
		return res, err
	}
	temporal, ok := c.pids["temporal"]
	if !ok || !alive(temporal) {
		return res, fmt.Errorf("rehearsal: the cluster's Temporal server does not run (scripts/rehearsal.sh status)")
	}
	workers := c.workerNames()
	if err := c.stopTogether(workers, syscall.SIGTERM, 100*time.Second); err != nil {
		return res, err
	}
	defer func() {
		if len(workers) == 0 {
			return
		}
		if err := c.startAll(workers, 90*time.Second); err != nil {
			say("restarting the workers: %v", err)
		}
	}()
	test := filepath.Join(o.BinDir, "workerapp.test")
	say("building the benchmark (go test -c ./internal/workerapp)")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", test, "./internal/workerapp")
	build.Dir, build.Stdout, build.Stderr = o.Repo, o.Out, o.Out
	if err := build.Run(); err != nil {
		return res, fmt.Errorf("rehearsal: building the benchmark: %w", err)
	}
	cpu := fmt.Sprintf("temporal=%d,postgres=~postgres,mariadb=~mariadbd|mysqld", temporal)
	run := func(part, title string, extra map[string]string) Metrics {
		say("%s: %s", part, title)
		m, err := runDrainBench(ctx, o, test, part, cpu, extra)
		if err != nil {
			errs = append(errs, part+": "+err.Error())
			say("%s: %v", part, err)
		}
		return m
	}
	if want["cluster"] {
		res.Cluster = run("cluster", "part 2 of 3: BenchmarkDrain ceiling, lean, flood against the cluster's frontend "+FrontendAddr+
			" (worker, emulator and no-op ceiling in the benchmark's process; the fleet stopped)",
			map[string]string{"SYNCBRIDGE_TEST_TEMPORAL_ADDRESS": FrontendAddr, "SYNCBRIDGE_TEST_TEMPORAL_NAMESPACE": Namespace})
	}
	if want["dev"] {
		res.Dev = run("dev", "part 3 of 3: the same phases on the embedded dev server (in the benchmark's process; the cluster idle)", nil)
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("rehearsal: bench: %s", strings.Join(errs, "; "))
	}
	return res, nil
}

// runDrainBench runs BenchmarkDrain's ceiling, lean and flood family once,
// its output copied to o.Out and DIR/logs/bench-PART.txt, and returns the
// metrics of its result line.
func runDrainBench(ctx context.Context, o BenchAllOptions, test, part, cpu string, extra map[string]string) (Metrics, error) {
	timeout := o.BenchTimeout
	if timeout <= 0 {
		timeout = 3 * time.Hour
	}
	cmd := exec.CommandContext(ctx, test, "-test.run", "^$", "-test.bench", "^BenchmarkDrain$", "-test.benchtime", "1x",
		"-test.timeout", timeout.String())
	cmd.Dir = filepath.Join(o.Repo, "internal", "workerapp")
	vars := map[string]string{
		// flood alone would run flood mode without its baselines.
		"SYNCBRIDGE_BENCH_PHASES":   "ceiling,lean,flood,bulk,plain",
		"SYNCBRIDGE_BENCH_CPU_PIDS": cpu,
		"SYNCBRIDGE_TEST_MYSQL_DSN": "root@tcp(" + o.MySQL + ")/",
	}
	if o.DrainMessages > 0 {
		vars["SYNCBRIDGE_BENCH_MESSAGES"] = strconv.Itoa(o.DrainMessages)
	}
	if o.FloodMessages > 0 {
		vars["SYNCBRIDGE_BENCH_FLOOD_MESSAGES"] = strconv.Itoa(o.FloodMessages)
	}
	if o.Exceptions != "" {
		vars["SYNCBRIDGE_BENCH_EXCEPTIONS"] = o.Exceptions
	}
	if o.FloodRounds > 0 {
		vars["SYNCBRIDGE_BENCH_FLOOD_ROUNDS"] = strconv.Itoa(o.FloodRounds)
	}
	for k, v := range extra {
		vars[k] = v
	}
	cmd.Env = benchEnv(os.Environ(), vars)
	logPath := filepath.Join(o.Dir, "logs", "bench-"+part+".txt")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return Metrics{}, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return Metrics{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	parsed := make(chan Metrics, 1)
	go func() {
		parsed <- ParseBenchOutput(io.TeeReader(pr, io.MultiWriter(o.Out, f)))
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	runErr := cmd.Run()
	pw.Close()
	m := <-parsed
	fmt.Fprintf(o.Out, "%s bench: %s took %s; output in %s\n", time.Now().UTC().Format("15:04:05"), part, time.Since(start).Round(time.Second), logPath)
	if runErr != nil {
		return m, fmt.Errorf("the benchmark failed (%v); see %s", runErr, logPath)
	}
	if len(m.Names) == 0 {
		return m, fmt.Errorf("no BenchmarkDrain result line in the output; see %s", logPath)
	}
	return m, nil
}

// benchEnv is environ without the harness's and the benchmark's variables
// (a shell's leftovers must not change what runs), plus vars.
func benchEnv(environ []string, vars map[string]string) []string {
	var out []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "SYNCBRIDGE_BENCH_") || strings.HasPrefix(kv, "SYNCBRIDGE_TEST_") {
			continue
		}
		out = append(out, kv)
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// Metrics are the figures of a benchmark's result line, by unit, in the
// line's order.
type Metrics struct {
	Names  []string
	Values map[string]float64
}

// Get is the value of name and whether the line had it.
func (m Metrics) Get(name string) (float64, bool) {
	v, ok := m.Values[name]
	return v, ok
}

// ParseBenchOutput reads go test -bench output and returns the metrics of
// the last BenchmarkDrain result line ("BenchmarkDrain-2  1  123 ns/op
// 86.3 ceiling_wf/s ...": the iteration count, then value-unit pairs).
func ParseBenchOutput(r io.Reader) Metrics {
	var m Metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkDrain") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		line := Metrics{Values: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			if _, dup := line.Values[f[i+1]]; !dup {
				line.Names = append(line.Names, f[i+1])
			}
			line.Values[f[i+1]] = v
		}
		if len(line.Names) > 0 {
			m = line
		}
	}
	return m
}

var (
	floodMix = regexp.MustCompile(`^flood(\d+)_msgs/s$`)
	cpuUnit  = regexp.MustCompile(`^(.+)_cpu_(.+)_s$`)
)

// SummaryTable sets the cluster's and the dev server's figures side by
// side: rates, ratios and history costs, then a table of the CPU seconds
// each process took over each phase's drains. A figure a side lacks is
// "-".
func SummaryTable(cluster, dev Metrics) string {
	var b strings.Builder
	b.WriteString("| figure | cluster | dev server |\n|---|---|---|\n")
	row := func(label, unit, format string) {
		cell := func(m Metrics) string {
			if v, ok := m.Get(unit); ok {
				return fmt.Sprintf(format, v)
			}
			return "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", label, cell(cluster), cell(dev))
	}
	row("lean msg/s", "msgs/s", "%.1f")
	row("ceiling wf/s", "ceiling_wf/s", "%.1f")
	row("lean / ceiling", "x_ceiling", "%.2f")
	row("lean events / record", "events/record", "%.2f")
	row("lean actions / record", "actions/record", "%.2f")
	row("lean events / inserted record", "events/inserted_record", "%.2f")
	row("lean actions / inserted record", "actions/inserted_record", "%.2f")
	row("lean record p50 ms", "record_p50_ms", "%.0f")
	row("ceiling record p50 ms", "ceiling_record_p50_ms", "%.0f")
	var mixes []int
	seen := map[int]bool{}
	for _, m := range []Metrics{cluster, dev} {
		for _, n := range m.Names {
			if g := floodMix.FindStringSubmatch(n); g != nil {
				pct, _ := strconv.Atoi(g[1])
				if !seen[pct] {
					seen[pct] = true
					mixes = append(mixes, pct)
				}
			}
		}
	}
	sort.Ints(mixes)
	for _, pct := range mixes {
		t := fmt.Sprintf("flood%d", pct)
		at := fmt.Sprintf(" (%d%% exceptions)", pct)
		row("flood msg/s"+at, t+"_msgs/s", "%.1f")
		row("flood vs plain"+at, t+"_x_plain", "%.2f")
		row("flood vs bulk"+at, t+"_x_bulk", "%.2f")
		row("plain msg/s"+at, t+"_plain_msgs/s", "%.1f")
		row("bulk msg/s"+at, t+"_bulk_msgs/s", "%.1f")
		row("flood events / msg"+at, t+"_events/msg", "%.3f")
		row("flood actions / msg"+at, t+"_actions/msg", "%.3f")
	}
	b.WriteString("\n" + cpuTable(cluster, dev))
	return b.String()
}

// cpuRank orders the CPU rows as the benchmark runs the phases (ceiling,
// lean, then flood, bulk and plain of each mix) and, within a phase, the
// benchmark's own process first, then the cluster's in the order bench
// names them; anything else keeps its place after those.
func cpuRank(unit string) (phase, proc int) {
	g := cpuUnit.FindStringSubmatch(unit)
	phase, proc = 1<<20, 1<<20
	switch tag := g[1]; {
	case tag == "ceiling":
		phase = 0
	case tag == "lean":
		phase = 1
	default:
		base, shape, _ := strings.Cut(tag, "_")
		if pct, err := strconv.Atoi(strings.TrimPrefix(base, "flood")); err == nil && strings.HasPrefix(base, "flood") {
			phase = 2 + 3*pct + map[string]int{"": 0, "bulk": 1, "plain": 2}[shape]
		}
	}
	for i, p := range []string{"self", "temporal", "postgres", "mariadb"} {
		if g[2] == p {
			proc = i
		}
	}
	return phase, proc
}

// Summary is bench's closing report: the fleet's table, then the
// benchmark's figures of the cluster and the dev server side by side.
func (r BenchAllResult) Summary() string {
	var b strings.Builder
	b.WriteString("bench summary\n")
	if len(r.Fleet) > 0 {
		b.WriteString("\nfleet (worker processes against the cluster, per-key and flood)\n\n" + BenchTable(r.Fleet))
	}
	if len(r.Cluster.Names) > 0 || len(r.Dev.Names) > 0 {
		b.WriteString("\nBenchmarkDrain: the cluster (Temporal on PostgreSQL, its own process) and the embedded dev server;\n" +
			"CPU seconds over each phase's drains (first consume to last ack, all its runs), self = the benchmark's process\n\n" +
			SummaryTable(r.Cluster, r.Dev))
	}
	return b.String()
}

// cpuTable is the CPU seconds of each process over each phase's drains:
// a row per phase, the cluster's processes, then the dev server's.
func cpuTable(cluster, dev Metrics) string {
	var phases, procs []string
	seenPhase, seenProc := map[string]bool{}, map[string]bool{}
	for _, m := range []Metrics{cluster, dev} {
		for _, n := range m.Names {
			g := cpuUnit.FindStringSubmatch(n)
			if g == nil {
				continue
			}
			if !seenPhase[g[1]] {
				seenPhase[g[1]] = true
				phases = append(phases, g[1])
			}
			if !seenProc[g[2]] {
				seenProc[g[2]] = true
				procs = append(procs, g[2])
			}
		}
	}
	if len(phases) == 0 {
		return ""
	}
	sort.SliceStable(phases, func(i, j int) bool {
		a, _ := cpuRank(phases[i] + "_cpu_x_s")
		b, _ := cpuRank(phases[j] + "_cpu_x_s")
		return a < b
	})
	sort.SliceStable(procs, func(i, j int) bool {
		_, a := cpuRank("x_cpu_" + procs[i] + "_s")
		_, b := cpuRank("x_cpu_" + procs[j] + "_s")
		return a < b
	})
	var b strings.Builder
	b.WriteString("| CPU seconds |")
	for _, side := range []string{"cluster", "dev"} {
		for _, p := range procs {
			fmt.Fprintf(&b, " %s: %s |", side, p)
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", 2*len(procs)) + "\n")
	for _, ph := range phases {
		fmt.Fprintf(&b, "| %s |", strings.ReplaceAll(ph, "_", " "))
		for _, m := range []Metrics{cluster, dev} {
			for _, p := range procs {
				if v, ok := m.Get(ph + "_cpu_" + p + "_s"); ok {
					fmt.Fprintf(&b, " %.2f |", v)
				} else {
					b.WriteString(" - |")
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
