package config

import (
	"os"
	"strings"
	"testing"
)

// docs/configuration.md's table is written by hand; this keeps it from
// drifting: every variable the loader reads must be documented there with
// its default.
func TestDocsDocumentEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
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
			t.Errorf("docs/configuration.md has no table row for %s", v.Name)
			continue
		}
		if v.Default != "" && !strings.Contains(row, "`"+v.Default+"`") {
			t.Errorf("docs/configuration.md row for %s does not state its default %q: %s", v.Name, v.Default, row)
		}
	}
}
