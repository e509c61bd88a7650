package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration table is written by hand; this keeps it from
// drifting: every variable the loader reads must be documented there with
// its default.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, v := range Vars {
		row := ""
		for _, line := range strings.Split(readme, "\n") {
			if strings.HasPrefix(line, "| `"+v.Name+"` |") {
				row = line
				break
			}
		}
		if row == "" {
			t.Errorf("README has no table row for %s", v.Name)
			continue
		}
		if v.Default != "" && !strings.Contains(row, "`"+v.Default+"`") {
			t.Errorf("README row for %s does not state its default %q: %s", v.Name, v.Default, row)
		}
	}
}
