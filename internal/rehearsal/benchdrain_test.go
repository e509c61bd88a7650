package rehearsal

import (
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/proccpu"
)

const sampleBenchOutput = `lean, run 1: 200 messages in 1.275s, 156.8 msgs/s; cpu self 1.68s
goos: linux
BenchmarkDrain-2   	       1	     39087 ns/op	         2.000 actions/record	         0.5200 ceiling_cpu_mariadb_s	         3.220 ceiling_cpu_self_s	       115.7 ceiling_wf/s	         7.200 events/record	         0.1000 flood20_cpu_mariadb_s	         0.3700 flood20_cpu_self_s	         0.2 flood20_bulk_cpu_self_s	  6000 flood20_msgs/s	  0.8 flood20_x_bulk	  9.5 flood20_x_plain	  1.25 flood5_cpu_self_s	  8000 flood5_msgs/s	 4.1 lean_cpu_self_s	 0.9 lean_cpu_temporal_s	 0.3 lean_cpu_zeta_s	 155.0 msgs/s	 1.34 x_ceiling
--- BENCH: BenchmarkDrain-2
    bench_test.go:300: BenchmarkDrain-2 1 2 not/a/result
PASS
`

func TestParseBenchOutput(t *testing.T) {
	m := ParseBenchOutput(strings.NewReader(sampleBenchOutput))
	if len(m.Names) != 19 || m.Names[0] != "ns/op" || m.Names[18] != "x_ceiling" {
		t.Fatalf("got %d names %v", len(m.Names), m.Names)
	}
	if v, ok := m.Get("ceiling_wf/s"); !ok || v != 115.7 {
		t.Errorf("ceiling_wf/s = %v, %v", v, ok)
	}
	if _, ok := m.Get("legacy_msgs/s"); ok {
		t.Error("a metric the line lacks was found")
	}
	if m := ParseBenchOutput(strings.NewReader("FAIL\n--- FAIL: BenchmarkDrain\n")); len(m.Names) != 0 {
		t.Errorf("a failed run parsed as %v", m.Names)
	}
}

func TestSummaryTable(t *testing.T) {
	cluster := ParseBenchOutput(strings.NewReader(sampleBenchOutput))
	dev := ParseBenchOutput(strings.NewReader("BenchmarkDrain-2 1 5 ns/op 300 msgs/s 0.75 dev_only_cpu_self_s\n"))
	got := SummaryTable(cluster, dev)
	for _, want := range []string{
		"| figure | cluster | dev server |\n|---|---|---|\n",
		"| lean msg/s | 155.0 | 300.0 |\n",
		"| ceiling wf/s | 115.7 | - |\n",
		"| lean / ceiling | 1.34 | - |\n",
		"| flood vs plain (20% exceptions) | 9.50 | - |\n",
		"| flood vs bulk (20% exceptions) | 0.80 | - |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "(5% exceptions)"), strings.Index(got, "(20% exceptions)"); i < 0 || j < i {
		t.Errorf("mixes not in ascending order:\n%s", got)
	}
	// CPU: a row per phase in the order the phases run, the benchmark's
	// own process first, the cluster's columns then the dev server's.
	cpu := got[strings.Index(got, "| CPU seconds |"):]
	for _, want := range []string{
		"| CPU seconds | cluster: self | cluster: temporal | cluster: mariadb | cluster: zeta | dev: self | dev: temporal | dev: mariadb | dev: zeta |\n|---|---|---|---|---|---|---|---|---|\n" +
			"| ceiling | 3.22 | - | 0.52 | - | - | - | - | - |\n" +
			"| lean | 4.10 | 0.90 | - | 0.30 | - | - | - | - |\n" +
			"| flood5 | 1.25 | - | - | - | - | - | - | - |\n" +
			"| flood20 | 0.37 | - | 0.10 | - | - | - | - | - |\n" +
			"| flood20 bulk | 0.20 | - | - | - | - | - | - | - |\n" +
			"| dev only | - | - | - | - | 0.75 | - | - | - |\n",
	} {
		if cpu != want {
			t.Errorf("CPU table\n%s\nwant\n%s", cpu, want)
		}
	}
}

func TestBenchEnv(t *testing.T) {
	got := benchEnv([]string{"PATH=/bin", "SYNCBRIDGE_BENCH_PHASES=legacy", "SYNCBRIDGE_TEST_TEMPORAL_ADDRESS=x:1", "SYNCBRIDGE_LOG_LEVEL=warn"},
		map[string]string{"SYNCBRIDGE_BENCH_PHASES": "ceiling", "A": "1"})
	if want := "PATH=/bin SYNCBRIDGE_LOG_LEVEL=warn A=1 SYNCBRIDGE_BENCH_PHASES=ceiling"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

// A phase drained within one sample of the broker's counters has no rate
// (not +Inf) and no ratio to the one-worker phase.
func TestBenchTableUntimed(t *testing.T) {
	got := BenchTable([]BenchPhase{
		{Name: "per-key, 1 worker", Workers: 1, Messages: 300, Took: 3 * time.Second, Polled: []int{300},
			CPU: []proccpu.Usage{{Name: "workers", Seconds: 1.5}, {Name: "temporal", Seconds: 4}}},
		{Name: "flood, 3 workers", Workers: 3, Flood: true, Messages: 900, Polled: []int{0, 400, 500}},
	})
	for _, want := range []string{
		"| per-key, 1 worker | 300 | 3s | 100.0 | 1.00 | [300] | - | - | workers 1.50s, temporal 4.00s |\n",
		"| flood, 3 workers | 900 | under 0.2s | - | - | [0 400 500] | - | - | - |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// Each fleet size's rate is taken over all its runs (the mirror order runs
// each twice), and every run is set against one worker's combined rate.
func TestBenchTableCombinesMirrorRuns(t *testing.T) {
	phases := []BenchPhase{
		{Name: "per-key, 1 worker", Workers: 1, Messages: 300, Took: 2 * time.Second},
		{Name: "per-key, 3 workers", Workers: 3, Messages: 300, Took: 3 * time.Second},
		{Name: "per-key, 3 workers", Workers: 3, Messages: 300, Took: 3 * time.Second},
		{Name: "per-key, 1 worker", Workers: 1, Messages: 300, Took: 4 * time.Second},
		{Name: "flood, 3 workers", Workers: 3, Flood: true, Messages: 900, Took: time.Second},
	}
	rates := PerKeyRates(phases)
	if len(rates) != 2 || rates[1] != 100 || rates[3] != 100 {
		t.Fatalf("rates %v, want 1 and 3 workers at 100 msg/s (600 messages in 6 s each), flood left out", rates)
	}
	got := BenchTable(phases)
	for _, want := range []string{
		"| per-key, 1 worker | 300 | 2s | 150.0 | 1.50 |",
		"| per-key, 1 worker | 300 | 4s | 75.0 | 0.75 |",
		"per-key over all runs of each fleet size: 1 worker(s) 100.0 msg/s (1.00) 3 worker(s) 100.0 msg/s (1.00)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
