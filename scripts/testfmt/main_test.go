package main

import (
	"strings"
	"testing"
	"time"
)

const stream = `{"Action":"start","Package":"a"}
{"Action":"run","Package":"a","Test":"TestSlow"}
{"Action":"output","Package":"a","Test":"TestSlow","Output":"=== RUN   TestSlow\n"}
{"Action":"pass","Package":"a","Test":"TestSlow","Elapsed":12.5}
{"Action":"run","Package":"a","Test":"TestFast"}
{"Action":"pass","Package":"a","Test":"TestFast","Elapsed":0.01}
{"Action":"output","Package":"a","Output":"PASS\n"}
{"Action":"output","Package":"a","Output":"ok  \ta\t13.0s\n"}
{"Action":"pass","Package":"a","Elapsed":13}
{"Action":"start","Package":"b"}
{"Action":"run","Package":"b","Test":"TestBroken"}
{"Action":"run","Package":"b","Test":"TestBroken/sub"}
{"Action":"output","Package":"b","Test":"TestBroken/sub","Output":"    b_test.go:9: want 1, got 2\n"}
{"Action":"fail","Package":"b","Test":"TestBroken/sub","Elapsed":0.1}
{"Action":"fail","Package":"b","Test":"TestBroken","Elapsed":0.2}
{"Action":"output","Package":"b","Output":"FAIL\tb\t0.3s\n"}
{"Action":"fail","Package":"b","Elapsed":0.3}
not json: go test's own message
`

func TestFormatterKeepsSummaryLinesShowsSlowTestsAndFailures(t *testing.T) {
	var out strings.Builder
	code := run(strings.NewReader(stream), &out, 5*time.Second, 0)
	got := out.String()
	if code != 1 {
		t.Errorf("exit code %d, want 1 (package b failed)", code)
	}
	for _, want := range []string{
		"ok  \ta\t13.0s\n", "FAIL\tb\t0.3s\n", // go test's summary lines, unchanged
		"pass   a TestSlow (12.5s)",
		"--- FAIL b TestBroken", "b_test.go:9: want 1, got 2",
		"not json: go test's own message",
		"1 failed", "FAIL b TestBroken",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"TestFast", "=== RUN   TestSlow", "\nPASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, got)
		}
	}
}

func TestFormatterPassesCleanRun(t *testing.T) {
	var out strings.Builder
	clean := strings.Join(strings.Split(stream, "\n")[:9], "\n")
	if code := run(strings.NewReader(clean), &out, time.Second, 0); code != 0 {
		t.Errorf("exit code %d for a passing run:\n%s", code, out.String())
	}
}

func TestProgressNamesRunningPackagesAndTests(t *testing.T) {
	var out strings.Builder
	f := newFormatter(&out, time.Second)
	f.handle(event{Action: "start", Package: "slowpkg"})
	f.handle(event{Action: "run", Package: "slowpkg", Test: "TestDrain"})
	f.progress(time.Now())
	if !strings.Contains(out.String(), "running: slowpkg (TestDrain") {
		t.Errorf("progress line: %q", out.String())
	}
	f.handle(event{Action: "pass", Package: "slowpkg"})
	out.Reset()
	f.progress(time.Now())
	if out.String() != "" {
		t.Errorf("progress after the package ended: %q", out.String())
	}
}
