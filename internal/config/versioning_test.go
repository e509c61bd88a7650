package config

import (
	"strings"
	"testing"
)

func TestVersioningDefaultsAndOverrides(t *testing.T) {
	c, err := Load(env(valid()))
	if err != nil {
		t.Fatal(err)
	}
	v := c.Versioning
	if v.Enabled || v.DeploymentName != "syncbridge" || v.BuildID == "" || v.BuildID != DefaultBuildID() {
		t.Fatalf("defaults: %+v (default build ID %q)", v, DefaultBuildID())
	}
	if !strings.Contains(c.String(), "version=unversioned") {
		t.Fatalf("String does not say the worker is unversioned: %s", c)
	}
	m := valid()
	m["SYNCBRIDGE_VERSIONING"] = "true"
	m["SYNCBRIDGE_DEPLOYMENT_NAME"] = "sync-eu"
	m["SYNCBRIDGE_BUILD_ID"] = "2026-12-04.1"
	c, err = Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Versioning{Enabled: true, DeploymentName: "sync-eu", BuildID: "2026-12-04.1"}); c.Versioning != want {
		t.Fatalf("got %+v, want %+v", c.Versioning, want)
	}
	if !strings.Contains(c.String(), "version=sync-eu:2026-12-04.1") {
		t.Fatalf("String lacks the version: %s", c)
	}
}

func TestVersioningRefusesWhatTheServerWould(t *testing.T) {
	for name, vals := range map[string][]string{
		"SYNCBRIDGE_DEPLOYMENT_NAME": {"a.b", "a:b", "__x", strings.Repeat("d", 256)},
		"SYNCBRIDGE_BUILD_ID":        {"__x", "has space", strings.Repeat("b", 256)},
		"SYNCBRIDGE_VERSIONING":      {"maybe"},
	} {
		for _, val := range vals {
			m := valid()
			m[name] = val
			_, err := Load(env(m))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: got %v, want an error naming %s", name, val, err, name)
			}
		}
	}
}

func TestBuildIDFromBuildInfo(t *testing.T) {
	digest := func() string { return "0123456789ab" }
	for _, c := range []struct {
		settings map[string]string
		want     string
	}{
		{map[string]string{"vcs.revision": "8f752ca1b2c3d4e5f60718293a4b5c6d7e8f9012", "vcs.modified": "false"}, "8f752ca1b2c3"},
		// A modified tree is not the commit: the executable tells builds apart.
		{map[string]string{"vcs.revision": "8f752ca1b2c3d4e5f60718293a4b5c6d7e8f9012", "vcs.modified": "true"}, "8f752ca1b2c3-dirty-0123456789ab"},
		// go test, go run, -buildvcs=false, no .git in the build context.
		{map[string]string{}, "bin-0123456789ab"},
	} {
		if got := buildID(c.settings, digest); got != c.want {
			t.Errorf("buildID(%v) = %q, want %q", c.settings, got, c.want)
		}
	}
	// Under go test there is no VCS information; the fallback is a real
	// digest of this test binary, stable within the process.
	if id := DefaultBuildID(); !strings.HasPrefix(id, "bin-") || len(id) != len("bin-")+12 || id == "bin-unknown" {
		t.Fatalf("DefaultBuildID under go test = %q", id)
	}
}
