//go:build !nodev

package main

import (
	"bytes"
	"errors"
	"flag"
	"os/exec"
	"strings"
	"testing"
)

// `worker -h` lists the worker's flags only, although the dev stack links
// packages that register flags on the global set.
func TestHelpListsOnlyOwnFlags(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags("worker", []string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseFlags(-h) = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	if !strings.Contains(help, "-dev") {
		t.Errorf("help lacks -dev:\n%s", help)
	}
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "test.") {
			return // the test binary's own
		}
		if strings.Contains(help, "-"+f.Name+" ") || strings.Contains(help, "-"+f.Name+"\n") {
			t.Errorf("help lists the global flag -%s registered by a library", f.Name)
		}
	})
	if strings.Contains(help, "mysql_") {
		t.Errorf("help lists library flags:\n%s", help)
	}
}

func TestDevFlagParses(t *testing.T) {
	d, err := parseFlags("worker", []string{"-dev", "-dev-seed", "3"}, &bytes.Buffer{})
	if err != nil || !d.enabled || d.seed != 3 {
		t.Fatalf("parseFlags = %+v, %v", d, err)
	}
}

// The built binary, as an operator runs it.
func TestBinaryHelpListsOnlyOwnFlags(t *testing.T) {
	out, err := exec.Command(workerBinary(t), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("worker -h: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-dev") || strings.Contains(string(out), "mysql_") {
		t.Errorf("worker -h:\n%s", out)
	}
}
