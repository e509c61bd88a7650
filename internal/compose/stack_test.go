package compose

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.yaml.in/yaml/v3"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// These tests check the repository's reference deployment: the Compose
// file, its env example, the Prometheus config, the Temporal init scripts
// and the Dockerfile.

const repo = "../.."

var (
	composePath = filepath.Join(repo, "docker-compose.yml")
	envExample  = filepath.Join(repo, "deploy", "env.example")
)

// appServices run the syncbridge image with the pipeline's configuration.
var appServices = []string{"worker", "starter"}

// variants are the two ways the stack is started: no env file (built-in
// defaults) and the documented env example.
func variants(t *testing.T) map[string]*File {
	t.Helper()
	ex, err := ReadEnvFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*File{}
	for name, env := range map[string]map[string]string{"defaults": {}, "env.example": ex} {
		f, err := Load(composePath, Lookup(env))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = f
	}
	return out
}

// composeTool runs Compose's own validation with a clean environment, so
// variables of the machine running the tests cannot change the result.
func composeTool(t *testing.T, envFile string, args ...string) []byte {
	t.Helper()
	tool, err := Tool()
	if errors.Is(err, ErrNoCompose) {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	full := append(append([]string{}, tool[1:]...), "--project-directory", repo, "-f", composePath, "--env-file", envFile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool[0], append(full, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(tool, " "), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func emptyEnvFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The proof that the file is valid Compose: `docker compose config`
// (or `docker-compose config`) accepts it, with and without the example.
func TestComposeConfigIsValid(t *testing.T) {
	composeTool(t, emptyEnvFile(t), "config", "-q")
	composeTool(t, envExample, "config", "-q")
}

// Compose's own interpolation agrees with the one the other tests use, so
// what they feed the config loader is what containers would get.
func TestInterpolationMatchesCompose(t *testing.T) {
	for name, envFile := range map[string]string{"defaults": emptyEnvFile(t), "env.example": envExample} {
		out := composeTool(t, envFile, "config")
		var resolved struct {
			Services map[string]struct {
				Environment Environment `yaml:"environment"`
				Image       string      `yaml:"image"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(out, &resolved); err != nil {
			t.Fatalf("%s: parse compose config output: %v", name, err)
		}
		ours := variants(t)[name]
		if len(resolved.Services) == 0 {
			t.Fatalf("%s: compose printed no services", name)
		}
		for svc, theirs := range resolved.Services {
			mine, ok := ours.Services[svc]
			if !ok {
				t.Fatalf("%s: service %s unknown to the parser", name, svc)
			}
			if mine.Image != theirs.Image {
				t.Errorf("%s: %s image %q, compose says %q", name, svc, mine.Image, theirs.Image)
			}
			for k, v := range theirs.Environment {
				if mine.Environment[k] != v {
					t.Errorf("%s: %s %s=%q, compose says %q", name, svc, k, mine.Environment[k], v)
				}
			}
			if len(mine.Environment) != len(theirs.Environment) {
				t.Errorf("%s: %s has %d variables, compose says %d", name, svc, len(mine.Environment), len(theirs.Environment))
			}
		}
	}
}

func knownVars() map[string]config.Var {
	known := map[string]config.Var{}
	for _, v := range config.Vars {
		known[v.Name] = v
		if v.Secret {
			known[v.Name+"_FILE"] = v
		}
	}
	return known
}

// The env proof: the worker and starter environments load with
// the real config loader, and set no variable the loader does not know.
func TestAppEnvironmentLoads(t *testing.T) {
	known := knownVars()
	for name, f := range variants(t) {
		for _, svc := range appServices {
			s, ok := f.Services[svc]
			if !ok {
				t.Fatalf("no %s service", svc)
			}
			for k := range s.Environment {
				if _, ok := known[k]; !ok {
					t.Errorf("%s: %s sets %s, which the worker does not read (typo?)", name, svc, k)
				}
			}
			cfg, err := config.Load(func(k string) string { return s.Environment[k] })
			if err != nil {
				t.Fatalf("%s: %s environment rejected by the worker: %v", name, svc, err)
			}
			if cfg.MetricsAddr == "" || cfg.Temporal.TLS.Enabled || cfg.Pipeline.Pollers < 1 {
				t.Fatalf("%s: %s: unexpected local config %s", name, svc, cfg)
			}
		}
	}
}

func hostPort(t *testing.T, what, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	return h, p
}

// The services agree with each other: the workers reach the services by
// their names and ports, with the credentials those services were given.
func TestServicesAgree(t *testing.T) {
	for name, f := range variants(t) {
		w := f.Services["worker"].Environment
		mysql := f.Services["mysql"].Environment
		mq := f.Services["mqemu"].Environment

		if h, p := hostPort(t, "TEMPORAL_ADDRESS", w["TEMPORAL_ADDRESS"]); h != "temporal" || p != "7233" {
			t.Errorf("%s: TEMPORAL_ADDRESS %s is not the temporal service", name, w["TEMPORAL_ADDRESS"])
		}
		if h, p := hostPort(t, "POLARDB_ENDPOINT", w["POLARDB_ENDPOINT"]); h != "mysql" || p != "3306" {
			t.Errorf("%s: POLARDB_ENDPOINT %s is not the mysql service", name, w["POLARDB_ENDPOINT"])
		}
		for wk, mk := range map[string]string{"POLARDB_USER": "MYSQL_USER", "POLARDB_PASSWORD": "MYSQL_PASSWORD", "POLARDB_DATABASE": "MYSQL_DATABASE"} {
			if w[wk] == "" || w[wk] != mysql[mk] {
				t.Errorf("%s: worker %s=%q but mysql creates %s=%q", name, wk, w[wk], mk, mysql[mk])
			}
		}
		pg, tmp, schema := f.Services["postgresql"].Environment, f.Services["temporal"].Environment, f.Services["temporal-schema"].Environment
		if pw := pg["POSTGRES_PASSWORD"]; pw == "" || tmp["POSTGRES_PWD"] != pw || schema["SQL_PASSWORD"] != pw {
			t.Errorf("%s: Temporal's database password differs from the postgresql service's", name)
		}
		for _, env := range []map[string]string{tmp, schema} {
			if env["POSTGRES_USER"] != pg["POSTGRES_USER"] || env["POSTGRES_SEEDS"] != "postgresql" {
				t.Errorf("%s: Temporal or its schema job does not log in to the postgresql service as %s", name, pg["POSTGRES_USER"])
			}
		}
		if tmp["TEMPORAL_DB"] != schema["TEMPORAL_DB"] || tmp["VISIBILITY_DB"] != schema["VISIBILITY_DB"] || tmp["TEMPORAL_DB"] == "" || tmp["VISIBILITY_DB"] == "" {
			t.Errorf("%s: Temporal uses databases %s/%s, the schema job prepares %s/%s", name,
				tmp["TEMPORAL_DB"], tmp["VISIBILITY_DB"], schema["TEMPORAL_DB"], schema["VISIBILITY_DB"])
		}

		u, err := url.Parse(w["ROCKETMQ_ENDPOINT"])
		if err != nil {
			t.Fatal(err)
		}
		_, mqPort := hostPort(t, "MQEMU_ADDR", mq["MQEMU_ADDR"])
		if u.Hostname() != "mqemu" || u.Port() != mqPort {
			t.Errorf("%s: ROCKETMQ_ENDPOINT %s is not the mqemu service on %s", name, u, mqPort)
		}
		for wk, mk := range map[string]string{"ALIBABA_ACCESS_KEY": "MQEMU_ACCESS_KEY", "ALIBABA_SECRET_KEY": "MQEMU_SECRET_KEY", "ROCKETMQ_INSTANCE_ID": "MQEMU_INSTANCE_ID"} {
			if w[wk] != mq[mk] {
				t.Errorf("%s: worker %s differs from emulator %s", name, wk, mk)
			}
		}
		if !slices.Contains(strings.Split(mq["MQEMU_TOPICS"], ","), w["ROCKETMQ_TOPIC"]) {
			t.Errorf("%s: topic %s not created by the emulator (%s)", name, w["ROCKETMQ_TOPIC"], mq["MQEMU_TOPICS"])
		}
		if ns := f.Services["temporal-init"].Environment["TEMPORAL_NAMESPACE"]; ns != w["TEMPORAL_NAMESPACE"] {
			t.Errorf("%s: temporal-init prepares namespace %q, workers use %q", name, ns, w["TEMPORAL_NAMESPACE"])
		}

		// Metrics, health and scraping meet on one port.
		_, metricsPort := hostPort(t, "SYNCBRIDGE_METRICS_ADDR", w["SYNCBRIDGE_METRICS_ADDR"])
		hc := f.Services["worker"].Healthcheck
		if hc == nil || len(hc.Test) < 2 || !strings.HasSuffix(hc.Test[len(hc.Test)-1], ":"+metricsPort+"/readyz") {
			t.Errorf("%s: worker healthcheck does not probe /readyz on %s: %+v", name, metricsPort, hc)
		}
		if p := prometheusWorkerPort(t); p != metricsPort {
			t.Errorf("%s: Prometheus scrapes workers on %s, metrics are on %s", name, p, metricsPort)
		}
		if r := f.Services["worker"].Deploy.Replicas; r != 3 {
			t.Errorf("%s: worker replicas %d, want 3", name, r)
		}
	}
}

func prometheusWorkerPort(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			if slices.Contains(d.Names, "worker") && d.Type == "A" {
				return strconv.Itoa(d.Port)
			}
		}
	}
	t.Fatal("prometheus.yml has no DNS discovery of the worker service")
	return ""
}

// Start order: no cycles, a healthy-condition only on services with a
// healthcheck, one-shot jobs only for completed-successfully, and the
// workers wait for their database, the namespace set-up and the broker.
func TestStartOrderAndHealthchecks(t *testing.T) {
	f := variants(t)["defaults"]
	if _, err := f.StartOrder(); err != nil {
		t.Fatal(err)
	}
	for name, s := range f.Services {
		for dep, cond := range s.DependsOn {
			d := f.Services[dep]
			switch cond {
			case "service_healthy":
				if d.Healthcheck == nil || d.Healthcheck.Disable || len(d.Healthcheck.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case "service_completed_successfully":
				// A one-shot job must not be restarted forever.
				if len(d.Entrypoint) == 0 {
					t.Errorf("%s waits for %s to complete, which has no job entrypoint", name, dep)
				}
			case "service_started":
			default:
				t.Errorf("%s: unknown condition %q", name, cond)
			}
		}
	}
	want := map[string]string{"mysql": "service_healthy", "temporal-init": "service_completed_successfully", "mqemu": "service_healthy"}
	for dep, cond := range want {
		if got := f.Services["worker"].DependsOn[dep]; got != cond {
			t.Errorf("worker depends on %s with %q, want %q", dep, got, cond)
		}
	}
	if f.Services["temporal"].DependsOn["temporal-schema"] != "service_completed_successfully" ||
		f.Services["temporal-init"].DependsOn["temporal"] != "service_healthy" {
		t.Error("Temporal must start after its schema and be healthy before the namespace is prepared")
	}
	for _, svc := range []string{"mysql", "temporal", "mqemu", "worker", "prometheus"} {
		if f.Services[svc].Healthcheck == nil {
			t.Errorf("%s has no healthcheck", svc)
		}
	}
	if !slices.Contains(f.Services["starter"].Profiles, "tools") {
		t.Error("starter must be opt-in (profile tools), not started by `up`")
	}
}

var pinnedTag = regexp.MustCompile(`^[^:@\s]+(:[^:@\s]*[0-9][^:@\s]*|:nonroot)?(@sha256:[0-9a-f]{64})?$`)

func pinned(image string) bool {
	if strings.HasSuffix(image, ":latest") || (!strings.Contains(image, ":") && !strings.Contains(image, "@")) {
		return false
	}
	return pinnedTag.MatchString(image)
}

// Every third-party image names a version.
func TestImagesArePinned(t *testing.T) {
	f := variants(t)["defaults"]
	for name, s := range f.Services {
		if s.Build != nil {
			if s.Image != "syncbridge:local" {
				t.Errorf("%s builds the image but tags it %q", name, s.Image)
			}
			continue
		}
		if !pinned(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
	}
	for _, from := range dockerfile(t).from {
		if !pinned(from) {
			t.Errorf("Dockerfile: FROM %q is not pinned", from)
		}
	}
	for _, bad := range []string{"mysql", "mysql:latest", "temporalio/ui:"} {
		if pinned(bad) {
			t.Errorf("pinned(%q) = true", bad)
		}
	}
}

// Every file the stack mounts or runs exists, the scripts parse, and the
// init script registers exactly the pipeline's search attributes.
func TestMountedFilesAndScripts(t *testing.T) {
	f := variants(t)["defaults"]
	for name, s := range f.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, "./") {
				if _, ok := f.Volumes[src]; !ok {
					t.Errorf("%s mounts undeclared volume %q", name, src)
				}
				continue
			}
			if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
				t.Errorf("%s mounts %s: %v", name, src, err)
			}
		}
		if len(s.Entrypoint) == 2 && s.Entrypoint[0] == "/bin/sh" {
			script := filepath.Join(repo, "deploy", "temporal", filepath.Base(s.Entrypoint[1]))
			if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
				t.Errorf("%s: %s does not parse: %v %s", name, script, err, out)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(repo, "deploy", "temporal", "init-namespace.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cliType := map[enumspb.IndexedValueType]string{
		enumspb.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", enumspb.INDEXED_VALUE_TYPE_TEXT: "Text",
		enumspb.INDEXED_VALUE_TYPE_INT: "Int", enumspb.INDEXED_VALUE_TYPE_DOUBLE: "Double",
		enumspb.INDEXED_VALUE_TYPE_BOOL: "Bool", enumspb.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
		enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
	}
	created := regexp.MustCompile(`search-attribute create .*--name (\S+) --type (\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(created) != len(searchattr.All()) {
		t.Fatalf("init-namespace.sh creates %d search attributes, the pipeline writes %d", len(created), len(searchattr.All()))
	}
	for _, m := range created {
		typ, ok := searchattr.All()[m[1]]
		if !ok || cliType[typ] != m[2] {
			t.Errorf("init-namespace.sh creates %s as %s; the pipeline declares %v", m[1], m[2], typ)
		}
	}

	var dc map[string]any
	b, err = os.ReadFile(filepath.Join(repo, "deploy", "temporal", "dynamicconfig", "syncbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &dc); err != nil || len(dc) == 0 {
		t.Fatalf("dynamic config: %v", err)
	}
	// The server reads deploy/temporal (mounted whole) as the rehearsal
	// does: its configuration file and the same dynamic config.
	tmp := f.Services["temporal"]
	if !slices.Contains(tmp.Volumes, "./deploy/temporal:/etc/temporal/syncbridge:ro") {
		t.Errorf("temporal does not mount deploy/temporal at /etc/temporal/syncbridge: %v", tmp.Volumes)
	}
	if want := "/etc/temporal/syncbridge/dynamicconfig/syncbridge.yaml"; tmp.Environment["DYNAMIC_CONFIG_FILE_PATH"] != want {
		t.Errorf("temporal reads %s", tmp.Environment["DYNAMIC_CONFIG_FILE_PATH"])
	}
	if i := slices.Index(tmp.Entrypoint, "--config-file"); i < 0 || i+1 >= len(tmp.Entrypoint) || tmp.Entrypoint[i+1] != "/etc/temporal/syncbridge/config.yaml" {
		t.Errorf("temporal does not start with deploy/temporal/config.yaml: %v", tmp.Entrypoint)
	}
}

type dockerfileInfo struct {
	from       []string // images (stage references excluded)
	buildLine  string   // the RUN line with go build, continuations joined
	packages   []string // ./pkg arguments of go build
	copied     []string // binaries copied into the final stage under /syncbridge
	finalUser  string
	entrypoint string
}

func dockerfile(t *testing.T) dockerfileInfo {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var d dockerfileInfo
	stages := map[string]bool{}
	for _, l := range lines {
		fields := strings.Fields(l)
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			if !stages[fields[1]] {
				d.from = append(d.from, fields[1])
			}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				stages[fields[3]] = true
			}
			d.finalUser, d.copied = "", nil
		case "RUN":
			if strings.Contains(l, "go build") {
				d.buildLine = l
				for _, f := range fields {
					if strings.HasPrefix(f, "./") {
						d.packages = append(d.packages, f)
					}
				}
			}
		case "COPY":
			if len(fields) > 2 && fields[len(fields)-1] == "/syncbridge/" {
				for _, src := range fields[1 : len(fields)-1] {
					if !strings.HasPrefix(src, "--") {
						d.copied = append(d.copied, filepath.Base(src))
					}
				}
			}
		case "USER":
			d.finalUser = fields[1]
		case "ENTRYPOINT":
			d.entrypoint = l
		}
	}
	return d
}

// The image: static, nonroot, built without the dev stack, and holding
// every binary the Compose services run.
func TestDockerfile(t *testing.T) {
	d := dockerfile(t)
	if d.finalUser == "" || d.finalUser == "root" || strings.HasPrefix(d.finalUser, "0") {
		t.Errorf("final stage runs as %q, want a non-root user", d.finalUser)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags nodev", "-trimpath"} {
		if !strings.Contains(d.buildLine, want) {
			t.Errorf("go build line lacks %s: %s", want, d.buildLine)
		}
	}
	for _, svc := range variants(t)["defaults"].Services {
		if svc.Build == nil {
			continue
		}
		bin := filepath.Base(svc.Entrypoint[0])
		if !slices.Contains(d.copied, bin) {
			t.Errorf("a service runs /syncbridge/%s, which the image does not contain (%v)", bin, d.copied)
		}
		if hc := svc.Healthcheck; hc != nil && len(hc.Test) > 1 && !slices.Contains(d.copied, filepath.Base(hc.Test[1])) {
			t.Errorf("healthcheck runs %s, which the image does not contain", hc.Test[1])
		}
	}
	for _, bin := range d.copied {
		if !slices.ContainsFunc(d.packages, func(p string) bool { return filepath.Base(p) == bin }) {
			t.Errorf("the image copies %s, which go build does not produce (%v)", bin, d.packages)
		}
	}

	// What go build compiles exists, and with -tags nodev none of it links
	// the dev stack or the Temporal server.
	args := append([]string{"list", "-tags", "nodev", "-deps", "-f", "{{.ImportPath}}"}, d.packages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.temporal.io/server") || strings.HasPrefix(dep, "github.com/temporalio/ui-server") ||
			strings.HasPrefix(dep, "github.com/dolthub/") || strings.HasSuffix(dep, "/internal/devstack") {
			t.Errorf("production binaries link %s", dep)
		}
	}

	// The build context keeps what go build needs.
	ig, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "internal", "activities", "workflows"}
	for _, p := range d.packages {
		needed = append(needed, strings.TrimPrefix(p, "./"))
	}
	for _, line := range strings.Split(string(ig), "\n") {
		pat := strings.TrimSpace(line)
		if pat == "" || strings.HasPrefix(pat, "#") || strings.HasPrefix(pat, "!") {
			continue
		}
		for _, n := range needed {
			if ok, _ := filepath.Match(pat, n); ok || pat == n || strings.HasPrefix(n, pat+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", pat, n)
			}
		}
	}
}
