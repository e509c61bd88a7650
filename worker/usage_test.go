package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/config"
)

// worker -h ends with the environment variables, every one of them.
func TestUsageEndsWithTheEnvironmentVariables(t *testing.T) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Bool("dev", false, "start an embedded local stack")
	var b strings.Builder
	usage(&b, fs)
	out := b.String()
	envAt := strings.Index(out, "environment variables")
	if strings.Index(out, "-dev") > envAt || envAt < 0 {
		t.Fatalf("the flags must come first, then the environment:\n%s", out)
	}
	for _, v := range config.Vars {
		if !strings.Contains(out[envAt:], "  "+v.Name+" ") {
			t.Errorf("-h does not list %s", v.Name)
		}
	}
	if !strings.Contains(out[envAt:], "docs/configuration.md") {
		t.Error("-h does not point at docs/configuration.md")
	}
	last := config.Vars[len(config.Vars)-1].Name
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.Contains(lines[len(lines)-1], last) {
		t.Errorf("-h must end with the environment variables; last line %q", lines[len(lines)-1])
	}
}
