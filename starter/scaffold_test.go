package main

import (
	"strings"
	"testing"
)

// The scaffold's promises, checked over the whole command tree so a new
// command keeps them without a test of its own. No service is needed:
// help and usage errors are decided before anything connects.

// leaves returns every runnable command of the tree.
func leaves(c *command) []*command {
	if c.actions == nil {
		return []*command{c}
	}
	var out []*command
	for _, a := range c.actions {
		out = append(out, leaves(a)...)
	}
	return out
}

func groups(c *command) []*command {
	if c.actions == nil {
		return nil
	}
	out := []*command{c}
	for _, a := range c.actions {
		out = append(out, groups(a)...)
	}
	return out
}

// Every command documents itself: a summary for its parent's list, a
// synopsis naming it, and a help text.
func TestEveryCommandIsDocumented(t *testing.T) {
	for _, c := range leaves(commandTree().link("")) {
		if c.summary == "" || strings.TrimSpace(c.about) == "" || !strings.HasPrefix(c.synopsis, c.path) {
			t.Errorf("%q: summary %q, synopsis %q, about %q", c.path, c.summary, c.synopsis, c.about)
		}
	}
}

// --help, -h and `help` print the usage on stdout and exit 0, for the
// program, every group and every command; a listing's help offers --json
// and a command that shows patient data offers --show-payload.
func TestHelpForEveryCommandOfTheTree(t *testing.T) {
	root := commandTree().link("")
	for _, g := range groups(root) {
		path := strings.Fields(g.path)
		for _, args := range [][]string{append(path, "--help"), append(path, "-h"), append(path, "help")} {
			code, out, errOut := runCLI(t, nil, args...)
			if code != exitOK || !strings.HasPrefix(out, "Usage: "+g.title()+" ") || errOut != "" {
				t.Errorf("starter %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
			}
			for _, a := range g.actions {
				if !strings.Contains(out, "  "+a.name+" ") {
					t.Errorf("starter %s does not list %s", strings.Join(args, " "), a.name)
				}
			}
		}
	}
	_, out, _ := runCLI(t, nil, "--help")
	for _, want := range []string{"Exit status: 0 success, 1 operational failure", "2 usage error", "--json", "camelCase"} {
		if !strings.Contains(out, want) {
			t.Errorf("starter --help lacks %q", want)
		}
	}
	for _, c := range leaves(root) {
		path := strings.Fields(c.path)
		code, out, errOut := runCLI(t, nil, append(path, "--help")...)
		if code != exitOK || !strings.HasPrefix(out, "Usage: starter "+c.path) || errOut != "" {
			t.Errorf("starter %s --help: exit %d, stdout %q, stderr %q", c.path, code, out, errOut)
			continue
		}
		if got := strings.Contains(out, "  --json "); got != c.listing {
			t.Errorf("starter %s --help: offers --json %t, listing %t", c.path, got, c.listing)
		}
		if got := strings.Contains(out, "  --show-payload "); got != c.patientData {
			t.Errorf("starter %s --help: offers --show-payload %t, shows patient data %t", c.path, got, c.patientData)
		}
		// `starter help PATH` is `starter PATH --help`.
		_, viaHelp, _ := runCLI(t, nil, append([]string{"help"}, path...)...)
		if viaHelp != out {
			t.Errorf("starter help %s differs from starter %s --help", c.path, c.path)
		}
	}
}

// An unknown command, action or flag is a usage error: exit 2, nothing on
// stdout, the message and the usage on stderr.
func TestUnknownCommandActionOrFlagExits2(t *testing.T) {
	root := commandTree().link("")
	type want struct {
		args []string
		msg  string
	}
	cases := []want{
		{[]string{"frobnicate"}, `starter: unknown command "frobnicate"`},
		{[]string{"--json"}, `starter: unknown command "--json"`},
	}
	for _, g := range groups(root)[1:] {
		cases = append(cases, want{[]string{g.path, "frobnicate"}, "starter " + g.path + `: unknown action "frobnicate"`})
		cases = append(cases, want{[]string{g.path}, "starter " + g.path + ": missing action"})
	}
	for _, c := range leaves(root) {
		args := append(strings.Fields(c.path), "--no-such-flag")
		cases = append(cases, want{args, "starter " + c.path + ": flag provided but not defined: -no-such-flag"})
		if !c.listing {
			args := append(strings.Fields(c.path), "--json")
			cases = append(cases, want{args, "starter " + c.path + ": flag provided but not defined: -json"})
		}
	}
	for _, w := range cases {
		code, out, errOut := runCLI(t, nil, w.args...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, w.msg) || !strings.Contains(errOut, "Usage: starter") {
			t.Errorf("starter %s: exit %d, stdout %q, stderr %q", strings.Join(w.args, " "), code, out, errOut)
		}
	}
}

// Operational failures exit 1 with one line on stderr naming the command,
// and --json changes nothing about it: stdout stays empty.
func TestFailureIsOneLineOnStderr(t *testing.T) {
	for _, c := range leaves(commandTree().link("")) {
		if !c.listing {
			continue
		}
		args := append(strings.Fields(c.path), "--json")
		code, out, errOut := runCLI(t, map[string]string{}, args...)
		if code != exitFailure || out != "" || !strings.HasPrefix(errOut, "starter "+c.path+": invalid configuration") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("starter %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// Positional argument counts are checked before anything connects.
func TestArgSpec(t *testing.T) {
	for _, c := range []struct {
		spec argSpec
		args []string
		want string
	}{
		{argSpec{}, nil, ""},
		{argSpec{}, []string{"x"}, `unexpected argument "x"`},
		{exactly(1, "KEY"), nil, "want exactly one KEY"},
		{exactly(1, "KEY"), []string{"a", "b"}, "want exactly one KEY"},
		{exactly(1, "KEY"), []string{"a"}, ""},
		{atLeast(1, "ID"), nil, "want at least one ID"},
		{atLeast(1, "ID"), []string{"1", "2", "3"}, ""},
		{atMost(1, "BUILD"), []string{"a", "b"}, "at most one BUILD"},
		{atMost(1, "BUILD"), nil, ""},
	} {
		err := c.spec.check(c.args)
		if (err == nil) != (c.want == "") || err != nil && err.Error() != c.want {
			t.Errorf("%+v %q: %v, want %q", c.spec, c.args, err, c.want)
		}
	}
}
