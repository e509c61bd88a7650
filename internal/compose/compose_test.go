package compose

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInterpolate(t *testing.T) {
	env := Lookup(map[string]string{"SET": "v", "EMPTY": "", "PORT": "7233"})
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"$SET", "v"},
		{"${SET}", "v"},
		{"x${SET}y$SET", "xvyv"},
		{"${UNSET}", ""},
		{"${UNSET:-d}", "d"},
		{"${EMPTY:-d}", "d"},
		{"${EMPTY-d}", ""},
		{"${UNSET-d}", "d"},
		{"${SET:-d}", "v"},
		{"${UNSET:-temporal:${PORT}}", "temporal:7233"},
		{"${UNSET:-${ALSO_UNSET:-deep}}", "deep"},
		{"${SET:+alt}", "alt"},
		{"${EMPTY:+alt}", ""},
		{"${EMPTY+alt}", "alt"},
		{"$$SET", "$SET"},
		{"cost $5", "cost $5"},
		{"end$", "end$"},
		{"${UNSET:-}", ""},
		{"http://mqemu:9876", "http://mqemu:9876"},
	}
	for _, c := range cases {
		got, err := Interpolate(c.in, env)
		if err != nil || got != c.want {
			t.Errorf("Interpolate(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"${UNSET:?needed}", "${EMPTY:?needed}", "${UNSET?needed}", "${open", "${1BAD}", "${SET/x/y}"} {
		if got, err := Interpolate(bad, env); err == nil {
			t.Errorf("Interpolate(%q) = %q, want an error", bad, got)
		}
	}
	if got, err := Interpolate("${EMPTY?needed}", env); err != nil || got != "" {
		t.Errorf("${EMPTY?...} is set: %q %v", got, err)
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	content := "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\nE=value # trailing comment\nF=\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "two words", "C": "quoted # not a comment", "D": "single", "E": "value", "F": ""}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"NOEQUALS\n", "1X=2\n", "A=1\nA=2\n"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEnvFile(p); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLoadNormalisesShapesAndInterpolates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "compose.yml")
	yml := `
x-env: &env
  ADDR: ${HOST:-db}:3306
  "${NOT_A_KEY}": kept
services:
  a:
    image: app:${TAG:-1.0}
    environment: *env
    depends_on: [b]
    entrypoint: /bin/a
    deploy:
      replicas: ${N:-3}
  b:
    image: b:2
    environment:
      - X=${HOST}
      - Y
    depends_on:
      c:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "true"]
  c:
    image: c:1
    command: ["run", "$${LITERAL}"]
`
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p, Lookup(map[string]string{"HOST": "mysql", "N": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := f.Services["a"], f.Services["b"], f.Services["c"]
	if a.Image != "app:1.0" || a.Environment["ADDR"] != "mysql:3306" || a.Environment["${NOT_A_KEY}"] != "kept" {
		t.Fatalf("a: %+v", a)
	}
	if a.Deploy.Replicas != 5 || len(a.Entrypoint) != 1 || a.DependsOn["b"] != "service_started" {
		t.Fatalf("a: %+v", a)
	}
	if b.Environment["X"] != "mysql" || b.Environment["Y"] != "" || b.DependsOn["c"] != "service_healthy" || b.Healthcheck == nil {
		t.Fatalf("b: %+v", b)
	}
	if strings.Join(c.Command, " ") != "run ${LITERAL}" {
		t.Fatalf("c: %+v", c)
	}
	order, err := f.StartOrder()
	if err != nil || strings.Join(order, ",") != "c,b,a" {
		t.Fatalf("order %v %v", order, err)
	}

	if _, err := Load(p, Lookup(map[string]string{"HOST": "x", "N": "many"})); err == nil {
		t.Fatal("replicas: many decoded as a number")
	}
}

func TestStartOrderRejectsCyclesAndUnknowns(t *testing.T) {
	f := &File{Services: map[string]Service{
		"a": {DependsOn: DependsOn{"b": "service_started"}},
		"b": {DependsOn: DependsOn{"a": "service_started"}},
	}}
	if _, err := f.StartOrder(); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
	f = &File{Services: map[string]Service{"a": {DependsOn: DependsOn{"ghost": "service_healthy"}}}}
	if _, err := f.StartOrder(); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("unknown: %v", err)
	}
}
