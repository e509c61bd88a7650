// Command testfmt turns `go test -json` into a readable log that shows
// progress while long integration packages run: go test without -v prints
// nothing for a package until it ends, which for the integration packages
// is many silent minutes. It prints
//
//   - every top-level test that took at least -slow, as it finishes;
//   - the full output of every failed test;
//   - every minute, the packages still running and their current test;
//   - the package summary lines exactly as go test prints them
//     ("ok  \tpkg\t12.3s", "FAIL\tpkg\t…"), which CI reads.
//
// It exits 1 when a package failed or did not build, so
// `go test -json ./... | go run ./scripts/testfmt` keeps go test's verdict
// (use `set -o pipefail` for go test's own exit code too).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type formatter struct {
	out  io.Writer
	slow time.Duration

	mu       sync.Mutex
	running  map[string]string    // package -> current top-level test
	started  map[string]time.Time // package -> start
	buffered map[string][]string  // package+"\x00"+test -> output
	failed   bool
	passed   int
	failures []string
}

func newFormatter(out io.Writer, slow time.Duration) *formatter {
	return &formatter{out: out, slow: slow, running: map[string]string{}, started: map[string]time.Time{}, buffered: map[string][]string{}}
}

func (f *formatter) handle(e event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := e.Package + "\x00" + e.Test
	topLevel := e.Test != "" && !strings.Contains(e.Test, "/")
	switch e.Action {
	case "start":
		f.started[e.Package] = time.Now()
	case "run":
		if topLevel {
			f.running[e.Package] = e.Test
		}
	case "build-output":
		fmt.Fprint(f.out, e.Output)
	case "build-fail":
		f.failed = true
	case "output":
		if e.Test == "" {
			// Package-level lines: the summary ("ok", "FAIL", "?"),
			// panics and TestMain output. The bare PASS line is noise.
			if strings.TrimSpace(e.Output) != "PASS" {
				fmt.Fprint(f.out, e.Output)
			}
			return
		}
		f.buffered[key] = append(f.buffered[key], e.Output)
	case "pass", "skip":
		if e.Test == "" {
			delete(f.running, e.Package)
			return
		}
		if topLevel {
			f.passed++
			if d := time.Duration(e.Elapsed * float64(time.Second)); e.Action == "pass" && d >= f.slow {
				fmt.Fprintf(f.out, "    %-6s %s %s (%.1fs)\n", e.Action, e.Package, e.Test, e.Elapsed)
			}
		}
		delete(f.buffered, key)
	case "fail":
		f.failed = true
		if e.Test == "" {
			delete(f.running, e.Package)
			return
		}
		if topLevel {
			f.failures = append(f.failures, e.Package+" "+e.Test)
		}
		// Subtests' output is part of their parent's: print it once,
		// with the top-level test.
		if topLevel {
			fmt.Fprintf(f.out, "--- FAIL %s %s (%.1fs)\n", e.Package, e.Test, e.Elapsed)
			for _, lines := range f.collect(e.Package, e.Test) {
				for _, l := range lines {
					fmt.Fprint(f.out, l)
				}
			}
		}
	}
}

// collect returns, in test-name order, the buffered output of test and its
// subtests, and forgets it.
func (f *formatter) collect(pkg, test string) [][]string {
	var keys []string
	for k := range f.buffered {
		p, name, _ := strings.Cut(k, "\x00")
		if p == pkg && (name == test || strings.HasPrefix(name, test+"/")) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([][]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, f.buffered[k])
		delete(f.buffered, k)
	}
	return out
}

// progress prints the packages still running.
func (f *formatter) progress(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.running) == 0 {
		return
	}
	var parts []string
	for pkg, test := range f.running {
		parts = append(parts, fmt.Sprintf("%s (%s, package %s)", pkg, test, now.Sub(f.started[pkg]).Round(time.Second)))
	}
	sort.Strings(parts)
	fmt.Fprintf(f.out, "... running: %s\n", strings.Join(parts, "; "))
}

func (f *formatter) summary() {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.out, "testfmt: %d top-level tests passed or skipped, %d failed\n", f.passed, len(f.failures))
	for _, t := range f.failures {
		fmt.Fprintf(f.out, "  FAIL %s\n", t)
	}
}

func run(in io.Reader, out io.Writer, slow, every time.Duration) int {
	f := newFormatter(out, slow)
	done := make(chan struct{})
	var wg sync.WaitGroup
	if every > 0 {
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case now := <-t.C:
					f.progress(now)
				}
			}
		})
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			// go test's own errors (e.g. a bad flag) are plain text.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		f.handle(e)
	}
	close(done)
	wg.Wait()
	f.summary()
	if f.failed {
		return 1
	}
	return 0
}

func main() {
	slow := flag.Duration("slow", 5*time.Second, "print passing top-level tests that took at least this long")
	every := flag.Duration("progress", time.Minute, "how often to print the packages still running; 0 = never")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *slow, *every))
}
