package main

import (
	"flag"
	"strings"
	"testing"
)

// No help text offers a flag that a library registered on the global flag
// set (go-mysql-server's vitess registers -mysql_auth_* there): the starter
// parses private FlagSets only.
func TestHelpListsOnlyOwnFlags(t *testing.T) {
	var global []string
	flag.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			global = append(global, f.Name)
		}
	})
	for _, args := range [][]string{
		{"--help"}, {"reconcile", "--help"}, {"quarantine", "list", "--help"}, {"conflicts", "list", "--help"},
		{"inspect", "--help"}, {"pollers", "stop", "--help"}, {"publish", "--help"},
	} {
		_, out, _ := runCLI(t, nil, args...)
		for _, name := range global {
			if strings.Contains(out, "-"+name) {
				t.Errorf("starter %s lists the library flag -%s", strings.Join(args, " "), name)
			}
		}
		if strings.Contains(out, "mysql_") {
			t.Errorf("starter %s lists library flags:\n%s", strings.Join(args, " "), out)
		}
	}
}
