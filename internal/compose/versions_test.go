package compose

import (
	"os/exec"
	"strings"
	"testing"
)

// The images run the versions the code is tested with: the Temporal
// server, its admin tools and the Web UI at the versions go.mod pins (the
// drift this test exists for: server 1.30.1 and UI 2.34.0 here while
// go.mod said 1.32.1 and 2.54.1).
func TestImagesMatchGoMod(t *testing.T) {
	mod := func(path string) string {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", path, err)
		}
		return strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	}
	server, ui := mod("go.temporal.io/server"), mod("github.com/temporalio/ui-server/v2")
	f := variants(t)["defaults"]
	for svc, want := range map[string]string{
		"temporal":        "temporalio/server:" + server,
		"temporal-schema": "temporalio/admin-tools:" + server,
		"temporal-init":   "temporalio/admin-tools:" + server,
		"temporal-ui":     "temporalio/ui:" + ui,
	} {
		if got := f.Services[svc].Image; got != want {
			t.Errorf("%s runs %s; go.mod pins %s", svc, got, want)
		}
	}
}
