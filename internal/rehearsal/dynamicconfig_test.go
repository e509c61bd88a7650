package rehearsal

import (
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
)

// The file up --short-drainage writes is read by the server's own
// file-based client: both drainage settings at 3 s for any namespace, and
// deploy/'s settings still there. Without the option the server reads
// deploy/'s file, whose drainage settings are the server's defaults.
func TestRehearsalDynamicConfig(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	load := func(path string) *dynamicconfig.Collection {
		t.Helper()
		done := make(chan any)
		t.Cleanup(func() { close(done) })
		c, err := dynamicconfig.NewFileBasedClient(&dynamicconfig.FileBasedClientConfig{Filepath: path, PollInterval: time.Minute},
			log.NewNoopLogger(), done)
		if err != nil {
			t.Fatalf("the server's dynamic config client refuses %s: %v", path, err)
		}
		return dynamicconfig.NewCollection(c, log.NewNoopLogger())
	}

	short, err := rehearsalDynamicConfig(Options{Repo: repo, Dir: t.TempDir(), ShortDrainage: true})
	if err != nil {
		t.Fatal(err)
	}
	col := load(short)
	for _, s := range []dynamicconfig.DurationPropertyFnWithNamespaceFilter{
		dynamicconfig.VersionDrainageStatusVisibilityGracePeriod.Get(col),
		dynamicconfig.VersionDrainageStatusRefreshInterval.Get(col),
	} {
		if got := s("syncbridge"); got != 3*time.Second {
			t.Errorf("short drainage: %v, want 3s", got)
		}
	}
	if got := dynamicconfig.MaxIDLengthLimit.Get(col)(); got != 255 {
		t.Errorf("deploy/'s limit.maxIDLength lost in the copy: %d", got)
	}

	plain, err := rehearsalDynamicConfig(Options{Repo: repo, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(repo, "deploy/temporal/dynamicconfig/syncbridge.yaml"); plain != want {
		t.Fatalf("without --short-drainage: %s, want deploy/'s %s", plain, want)
	}
	if got := dynamicconfig.VersionDrainageStatusRefreshInterval.Get(load(plain))("syncbridge"); got != 3*time.Minute {
		t.Errorf("deploy/'s drainage refresh: %v, want the server's default 3m", got)
	}
}
