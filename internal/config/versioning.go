package config

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
)

// Versioning places the worker in a Temporal Worker Deployment: each
// build is a version of the deployment, every record workflow stays on
// the version that started it (pinned), and an operator moves new work to
// a new build with `starter deploy`. Off, the worker is unversioned: any
// worker of the task queue runs any task, as before versioning existed.
type Versioning struct {
	// Enabled joins the deployment (SYNCBRIDGE_VERSIONING). Off by
	// default: a versioned worker takes no new workflow until an operator
	// makes its version current, so switching it on is a deliberate step
	// of a cluster's first versioned deploy (docs/deploying.md, "Turning
	// it on"), not something a routine restart may do.
	Enabled bool
	// DeploymentName is the Worker Deployment every build of this fleet
	// belongs to; one per task queue set (pipeline).
	DeploymentName string
	// BuildID names this build inside the deployment. Two different
	// builds must never share one: the server would route an execution
	// pinned to the one to workers of the other.
	BuildID string
}

// maxDeploymentField keeps the deployment name and build ID well inside
// the server's bound (half of limit.maxIDLength, 1000, less a prefix).
const maxDeploymentField = 255

func (l *loader) versioning() Versioning {
	v := Versioning{
		Enabled:        l.boolean("SYNCBRIDGE_VERSIONING"),
		DeploymentName: l.str("SYNCBRIDGE_DEPLOYMENT_NAME"),
		BuildID:        l.str("SYNCBRIDGE_BUILD_ID"),
	}
	if v.BuildID == "" {
		v.BuildID = DefaultBuildID()
	}
	// The server's rules for both fields (worker_versioning.go): '.' and
	// ':' delimit version strings, "__" prefixes its own.
	if n := v.DeploymentName; n == "" || strings.ContainsAny(n, ".:") || strings.HasPrefix(n, "__") || len(n) > maxDeploymentField {
		l.fail("SYNCBRIDGE_DEPLOYMENT_NAME", "must be 1-255 bytes without '.' or ':' and not start with '__'")
	}
	if b := v.BuildID; strings.HasPrefix(b, "__") || len(b) > maxDeploymentField || strings.ContainsAny(b, " \t\r\n") {
		l.fail("SYNCBRIDGE_BUILD_ID", "must be 1-255 bytes without blanks and not start with '__'")
	}
	return v
}

var defaultBuildID struct {
	once sync.Once
	id   string
}

// DefaultBuildID is the build ID when SYNCBRIDGE_BUILD_ID is not set: the
// VCS revision the binary was built from (its first 12 hex digits, as git
// abbreviates), so every commit is its own version without anyone naming
// it. A binary built from a modified tree gets the revision plus a digest
// of the executable, and one without VCS information (go test, go run,
// -buildvcs=false, a build context without .git) the digest alone: two
// different builds under one ID would defeat pinning.
func DefaultBuildID() string {
	defaultBuildID.once.Do(func() {
		defaultBuildID.id = buildID(readBuildInfo(), executableDigest)
	})
	return defaultBuildID.id
}

func readBuildInfo() map[string]string {
	settings := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	return settings
}

// buildID derives the ID from build settings; digest is only called when
// the revision alone does not identify the build.
func buildID(settings map[string]string, digest func() string) string {
	rev := settings["vcs.revision"]
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev != "" && settings["vcs.modified"] != "true":
		return rev
	case rev != "":
		return rev + "-dirty-" + digest()
	default:
		return "bin-" + digest()
	}
}

// executableDigest is the first 12 hex digits of the running executable's
// SHA-256; "unknown" when it cannot be read (SYNCBRIDGE_BUILD_ID is then
// the way to tell builds apart).
func executableDigest() string {
	path, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
