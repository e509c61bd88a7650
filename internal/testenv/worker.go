package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/syncbridge/syncbridge/internal/monitoring"
)

// built is the production worker binary, built once per test binary.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// WorkerBinary builds ./worker as production ships it (-tags nodev: no
// embedded dev stack) once per test binary and returns its path, for tests
// that need worker processes to kill and restart. Main removes it.
func WorkerBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		root, err := monitoring.RepoRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, err = os.MkdirTemp("", "syncbridge-worker-"); err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(built.dir, "worker")
		cmd := exec.Command("go", "build", "-tags", "nodev", "-o", built.path, "./worker")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build worker: %v\n%s", err, b)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.path
}

func removeWorkerBinary() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}
