// Package rehearsal runs syncbridge the way production does, on one
// machine: the official Temporal server (built from the pinned
// go.temporal.io/server module) as its own process on PostgreSQL, with
// SQL persistence and SQL advanced visibility on several history shards;
// its Web UI; the codec server; the RocketMQ emulator as its own process
// with a snapshot file; MariaDB standing in for PolarDB behind a TCP proxy
// the drill can cut; and N worker processes configured only through
// environment variables, as deploy/env.example describes.
//
// Everything the embedded dev server hides is in play here: another
// process and its restarts, shards, SQL visibility's own query engine, a
// namespace and search attribute registered like an operator does on a
// fresh cluster. Drill breaks it while a backlog drains and judges the
// result from outside the workers (broker counters and database rows).
//
// Up, Drill, Status and Down are separate invocations sharing DIR: the
// state file says how each process was started, DIR/pids which runs.
package rehearsal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/syncbridge/syncbridge/internal/devstack"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// Ports: a range of their own, clear of the dev stack's defaults (7233,
// 8233, 9876, 3307, 8234, 9090) so both can run at once. Membership ports
// stay below 32768 (see deploy/temporal/config.yaml).
const (
	FrontendAddr    = "127.0.0.1:17233"
	frontendHTTP    = "17243"
	historyGRPC     = "17234"
	matchingGRPC    = "17235"
	workerGRPC      = "17239"
	frontendMember  = "16933"
	historyMember   = "16934"
	matchingMember  = "16935"
	workerMember    = "16939"
	temporalMetrics = "127.0.0.1:17000"
	UIAddr          = "127.0.0.1:18080"
	CodecAddr       = "127.0.0.1:18081"
	MQAddr          = "127.0.0.1:19876"
	DBProxyAddr     = "127.0.0.1:17306"
	// workerMetricsBase + i is worker-i's metrics and health port.
	workerMetricsBase = 19090

	Namespace = "syncbridge"
	Retention = 72 * time.Hour

	// Rehearsal-specific names, so nothing else on the machine collides.
	TemporalDB   = "syncbridge_rehearsal_temporal"
	VisibilityDB = "syncbridge_rehearsal_visibility"
	AppDB        = "syncbridge_rehearsal"
	appUser      = "syncbridge_rehearsal"

	Topic = "patient-sync"
	Group = "GID_syncbridge"
	Tag   = "SyncEvent"
)

// Options are up's.
type Options struct {
	Dir     string // state, logs, snapshot, pids
	BinDir  string // temporal-server, temporal-sql-tool, temporal-ui-server, worker, starter, mqemu, rehearsal
	Repo    string // the checkout: deploy/ is read from here
	Workers int    // 0: the cluster only, for tests or hand-started workers
	Flood   bool
	// ShortDrainage makes the server check whether an old worker build is
	// drained every 3 s instead of 3 min (see rehearsalDynamicConfig).
	ShortDrainage bool
	// MySQL is the server standing in for PolarDB (root, empty password).
	MySQL string
	// PostgreSQL is Temporal's database server (trust authentication).
	PostgreSQL string
	// PGCluster is the Debian cluster the drill restarts ("15/main").
	PGCluster string
	Out       io.Writer
}

func (o Options) bin(name string) string { return filepath.Join(o.BinDir, name) }

// Up starts everything and prints the export block.
func Up(ctx context.Context, o Options) (err error) {
	if o.Workers < 0 {
		return fmt.Errorf("rehearsal: --workers must be 0 or more")
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o755); err != nil {
		return err
	}
	dynamicConfig, err := rehearsalDynamicConfig(o)
	if err != nil {
		return err
	}
	if c, lerr := loadCluster(o.Dir); lerr == nil {
		for name, pid := range c.pids {
			if alive(pid) {
				return fmt.Errorf("rehearsal: %s (pid %d) of a previous up still runs: run down first", name, pid)
			}
		}
	}
	c := &cluster{dir: o.Dir, pids: map[string]int{}, children: map[int]*exec.Cmd{}}
	c.state = State{Workers: o.Workers, Flood: o.Flood, Specs: map[string]Spec{}, Settings: map[string]string{}, PGCluster: o.PGCluster}
	defer func() {
		if err != nil {
			fmt.Fprintf(o.Out, "rehearsal: up failed, stopping what started: %v\n", err)
			_ = c.stopAll(o.Out)
		}
	}()

	temporalDir, err := moduleDir(o.Repo, "go.temporal.io/server")
	if err != nil {
		return err
	}
	uiDir, err := moduleDir(o.Repo, "github.com/temporalio/ui-server/v2")
	if err != nil {
		return err
	}
	secret, dbPassword, payloadKey, codecToken := randHex(16), randHex(16), randKey(), randHex(16)

	step := func(format string, args ...any) { fmt.Fprintf(o.Out, "rehearsal: "+format+"\n", args...) }

	step("Temporal schemas on PostgreSQL %s (databases %s, %s) with temporal-sql-tool", o.PostgreSQL, TemporalDB, VisibilityDB)
	if err := setupSchemas(ctx, o, temporalDir); err != nil {
		return err
	}
	step("MariaDB %s: database %s, user %s", o.MySQL, AppDB, appUser)
	if err := setupAppDB(ctx, o.MySQL, dbPassword); err != nil {
		return err
	}

	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	pgHost, pgPort, _ := strings.Cut(o.PostgreSQL, ":")
	add := func(sp Spec) {
		c.state.Specs[sp.Name] = sp
		c.state.Order = append(c.state.Order, sp.Name)
	}
	add(Spec{Name: "dbproxy", Path: o.bin("rehearsal"), Args: []string{"proxy", DBProxyAddr, o.MySQL},
		Env: base, Ready: "tcp:" + DBProxyAddr, Ports: []string{DBProxyAddr}})
	add(Spec{Name: "temporal", Path: o.bin("temporal-server"),
		Args: []string{"--config-file", filepath.Join(o.Repo, "deploy/temporal/config.yaml"), "--allow-no-auth", "start"},
		Env: append(append([]string{}, base...),
			"POSTGRES_SEEDS="+pgHost, "DB_PORT="+pgPort, "POSTGRES_USER=postgres", "POSTGRES_PWD=",
			"TEMPORAL_DB="+TemporalDB, "VISIBILITY_DB="+VisibilityDB, "NUM_HISTORY_SHARDS=4",
			"BIND_ON_IP=127.0.0.1", "TEMPORAL_BROADCAST_ADDRESS=127.0.0.1",
			"FRONTEND_GRPC_PORT="+port(FrontendAddr), "FRONTEND_HTTP_PORT="+frontendHTTP, "FRONTEND_MEMBERSHIP_PORT="+frontendMember,
			"HISTORY_GRPC_PORT="+historyGRPC, "HISTORY_MEMBERSHIP_PORT="+historyMember,
			"MATCHING_GRPC_PORT="+matchingGRPC, "MATCHING_MEMBERSHIP_PORT="+matchingMember,
			"WORKER_GRPC_PORT="+workerGRPC, "WORKER_MEMBERSHIP_PORT="+workerMember,
			"TEMPORAL_METRICS_ADDR="+temporalMetrics,
			"DYNAMIC_CONFIG_FILE_PATH="+dynamicConfig),
		Ready: "tcp:" + FrontendAddr,
		Ports: []string{FrontendAddr, "127.0.0.1:" + frontendHTTP, "127.0.0.1:" + historyGRPC, "127.0.0.1:" + matchingGRPC,
			"127.0.0.1:" + workerGRPC, "127.0.0.1:" + frontendMember, "127.0.0.1:" + historyMember,
			"127.0.0.1:" + matchingMember, "127.0.0.1:" + workerMember, temporalMetrics}})
	add(Spec{Name: "mqemu", Path: o.bin("mqemu"), Env: append(append([]string{}, base...),
		"MQEMU_ADDR="+MQAddr, "MQEMU_ACCESS_KEY=rehearsal-access-key", "MQEMU_SECRET_KEY="+secret,
		"MQEMU_INSTANCE_ID=MQ_INST_rehearsal", "MQEMU_TOPICS="+Topic, "MQEMU_INVISIBLE_TIME=1m",
		"MQEMU_PERSIST_PATH="+filepath.Join(o.Dir, "mqemu.json"), "MQEMU_SEED_MESSAGES=0", "MQEMU_LOG_LEVEL=warn"),
		Ready: "http://" + MQAddr + "/_emulator/stats", Ports: []string{MQAddr}})

	// The pipeline's configuration, as deploy/env.example names it.
	pipeline := [][2]string{
		{"ROCKETMQ_ENDPOINT", "http://" + MQAddr},
		{"ALIBABA_ACCESS_KEY", "rehearsal-access-key"},
		{"ALIBABA_SECRET_KEY", secret},
		{"ROCKETMQ_INSTANCE_ID", "MQ_INST_rehearsal"},
		{"ROCKETMQ_TOPIC", Topic},
		{"ROCKETMQ_GROUP_ID", Group},
		{"ROCKETMQ_TAG", Tag},
		{"ROCKETMQ_ALLOW_HTTP", "true"},
		{"TEMPORAL_ADDRESS", FrontendAddr},
		{"TEMPORAL_NAMESPACE", Namespace},
		{"TEMPORAL_TLS", "auto"},
		{"POLARDB_ENDPOINT", DBProxyAddr},
		{"POLARDB_USER", appUser},
		{"POLARDB_PASSWORD", dbPassword},
		{"POLARDB_DATABASE", AppDB},
		{"POLARDB_MAX_CONNS", "10"},
		{"POLARDB_TLS", "false"},
		{"POLARDB_ALLOW_PLAINTEXT", "true"},
		{"SYNCBRIDGE_TASK_QUEUE", "syncbridge"},
		// At least one poller per worker: records run where the poll
		// activities are (docs/production.md, "Scaling").
		{"SYNCBRIDGE_POLLERS", strconv.Itoa(max(2, o.Workers))},
		{"SYNCBRIDGE_MAX_INFLIGHT", "200"},
		{"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES", "255"}, // = limit.maxIDLength in the dynamic config
		{"SYNCBRIDGE_FLOOD_MODE", strconv.FormatBool(o.Flood)},
		{"SYNCBRIDGE_PAYLOAD_KEY", payloadKey},
		{"SYNCBRIDGE_PAYLOAD_KEY_ID", "rehearsal"},
		{"SYNCBRIDGE_CODEC_TOKEN", codecToken},
		{"SYNCBRIDGE_CODEC_UI_ORIGIN", "http://" + UIAddr},
		{"SYNCBRIDGE_CODEC_AUTH", "ui-origin"},
		{"SYNCBRIDGE_LOG_LEVEL", "info"},
	}
	c.state.Export = pipeline
	penv := append([]string{}, base...)
	for _, kv := range pipeline {
		penv = append(penv, kv[0]+"="+kv[1])
	}
	add(Spec{Name: "codec", Path: o.bin("starter"), Args: []string{"codec-server"},
		Env:   append(append([]string{}, penv...), "SYNCBRIDGE_CODEC_ADDR="+CodecAddr),
		Ready: "tcp:" + CodecAddr, Ports: []string{CodecAddr}})
	add(Spec{Name: "ui", Path: o.bin("temporal-ui-server"),
		// The image's own template (config/docker.yaml), read from the
		// pinned module, configured by the same variables as the image.
		Args: []string{"--root", uiDir, "--config", "config", "--env", "docker", "start"},
		Env: append(append([]string{}, base...), "TEMPORAL_ADDRESS="+FrontendAddr, "TEMPORAL_UI_PORT="+port(UIAddr),
			"TEMPORAL_DEFAULT_NAMESPACE="+Namespace, "TEMPORAL_CODEC_ENDPOINT=http://"+CodecAddr,
			"TEMPORAL_DISABLE_WRITE_ACTIONS=true", "TEMPORAL_CSRF_COOKIE_INSECURE=true", "TEMPORAL_DISABLE_NEWS_FETCH=true",
			"TEMPORAL_HIDE_LOGS=true"),
		Ready: "http://" + UIAddr + "/healthz", Ports: []string{UIAddr}})
	for i := 1; i <= o.Workers; i++ {
		maddr := fmt.Sprintf("127.0.0.1:%d", workerMetricsBase+i)
		add(Spec{Name: fmt.Sprintf("worker-%d", i), Path: o.bin("worker"),
			Env:   append(append([]string{}, penv...), "SYNCBRIDGE_METRICS_ADDR="+maddr),
			Ready: "http://" + maddr + "/readyz", Ports: []string{maddr}})
	}
	if err := c.saveState(); err != nil {
		return err
	}

	for _, name := range []string{"dbproxy", "temporal"} {
		step("starting %s", name)
		if err := c.start(name, 60*time.Second); err != nil {
			return err
		}
	}
	step("namespace %s (retention %s) and search attributes %v, as an operator registers them", Namespace, Retention, names(searchattr.All()))
	if err := registerNamespace(ctx, FrontendAddr); err != nil {
		return err
	}
	for _, name := range []string{"mqemu", "codec", "ui"} {
		step("starting %s", name)
		if err := c.start(name, 90*time.Second); err != nil {
			return err
		}
	}
	// Together, as a fleet rolls out: the first worker up would otherwise
	// take every poll activity, and records run where the polls are.
	if names := c.workerNames(); len(names) > 0 {
		step("starting %s", strings.Join(names, ", "))
		if err := c.startAll(names, 90*time.Second); err != nil {
			return err
		}
	} else {
		step("no workers (--workers 0): start them by hand with the exports below, or point tests at the cluster")
	}
	fmt.Fprint(o.Out, c.banner())
	return nil
}

func (c *cluster) banner() string {
	var b strings.Builder
	line := func(name, value string) { fmt.Fprintf(&b, "  %-19s %s\n", name, value) }
	b.WriteString("\nsyncbridge production rehearsal is up\n")
	line("Temporal frontend", FrontendAddr+" (namespace "+Namespace+"; PostgreSQL "+TemporalDB+" + "+VisibilityDB+", 4 shards)")
	line("Temporal Web UI", "http://"+UIAddr)
	line("Codec server", "http://"+CodecAddr+" (the Web UI decodes through it)")
	line("RocketMQ emulator", "http://"+MQAddr+" (snapshot "+c.path("mqemu.json")+")")
	line("Database", "MariaDB database "+AppDB+" through the proxy "+DBProxyAddr)
	for _, w := range c.workerNames() {
		line(w, "http://"+c.state.Specs[w].Ports[0]+"/metrics, /readyz")
	}
	line("Processes", c.path("pids")+"; logs in "+c.path("logs"))
	b.WriteString("\nFor a second terminal:\n")
	b.WriteString(devstack.ExportBlock(c.state.Export))
	b.WriteString("\nscripts/rehearsal.sh down stops everything.\n")
	return b.String()
}

// Status prints every process and whether it runs and answers.
func Status(dir string, out io.Writer) error {
	c, err := loadCluster(dir)
	if err != nil {
		return err
	}
	down := 0
	for _, name := range c.state.Order {
		pid, ok := c.pids[name]
		state := "not running"
		if ok && alive(pid) {
			state = fmt.Sprintf("running (pid %d)", pid)
			if err := waitReady(c.state.Specs[name].Ready, 0, nil); err != nil {
				state += ", not ready: " + err.Error()
				down++
			}
		} else {
			down++
		}
		fmt.Fprintf(out, "%-10s %s\n", name, state)
	}
	if st, err := mqStats(); err == nil {
		fmt.Fprintf(out, "broker     published %d ready %d in flight %d acked %d dead-lettered %d\n",
			st.Published, st.Ready, st.InFlight, st.Acked, st.DeadLettered)
	}
	if down > 0 {
		return fmt.Errorf("rehearsal: %d process(es) down or not ready", down)
	}
	return nil
}

// Down stops every process (workers first, the proxy last) and checks
// that none of the rehearsal's ports is still listening.
func Down(dir string, out io.Writer) error {
	c, err := loadCluster(dir)
	if err != nil {
		return err
	}
	return c.stopAll(out)
}

func (c *cluster) stopAll(out io.Writer) error {
	var errs []string
	for i := len(c.state.Order) - 1; i >= 0; i-- {
		name := c.state.Order[i]
		if pid, ok := c.pids[name]; ok && alive(pid) {
			fmt.Fprintf(out, "rehearsal: stopping %s (pid %d)\n", name, pid)
		}
		// Workers finish in-flight activities on SIGTERM; 30 s is plenty
		// for a rehearsal, after which they are killed like any process.
		if err := c.stop(name, syscall.SIGTERM, 30*time.Second); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, name := range c.state.Order {
		for _, addr := range c.state.Specs[name].Ports {
			if listening(addr) {
				errs = append(errs, fmt.Sprintf("%s still listening on %s", name, addr))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rehearsal: down: %s", strings.Join(errs, "; "))
	}
	fmt.Fprintln(out, "rehearsal: everything stopped, nothing listening")
	return nil
}

// setupSchemas drops Temporal's two databases (a rehearsal starts from
// an empty cluster) and runs deploy/temporal/setup-schema.sh, the script
// docker-compose.yml's temporal-schema runs, with the SQL tool and schema
// files of the pinned server module.
func setupSchemas(ctx context.Context, o Options, temporalDir string) error {
	host, p, _ := strings.Cut(o.PostgreSQL, ":")
	logf, err := os.OpenFile(filepath.Join(o.Dir, "logs", "schema.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	for _, db := range []string{TemporalDB, VisibilityDB} {
		cmd := exec.CommandContext(ctx, o.bin("temporal-sql-tool"),
			"--plugin", "postgres12", "--ep", host, "-p", p, "-u", "postgres", "--db", db, "drop", "--force")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("rehearsal: temporal-sql-tool drop %s: %w (see %s)", db, err, logf.Name())
		}
	}
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(o.Repo, "deploy/temporal/setup-schema.sh"))
	cmd.Env = []string{"PATH=" + o.BinDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"POSTGRES_SEEDS=" + host, "DB_PORT=" + p, "POSTGRES_USER=postgres", "SQL_PASSWORD=",
		"TEMPORAL_DB=" + TemporalDB, "VISIBILITY_DB=" + VisibilityDB,
		"SCHEMA_DIR=" + filepath.Join(temporalDir, "schema/postgresql/v12")}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rehearsal: deploy/temporal/setup-schema.sh: %w (see %s)", err, logf.Name())
	}
	return nil
}

// shortDrainage is appended to the dynamic config by up --short-drainage.
// Whether an old worker build is drained is decided by the server a grace
// period after the build stopped taking new work (for visibility to catch
// up), then every refresh interval: 3 minutes each by default, which is
// right for a fleet but makes a test or a runbook walk wait minutes for
// `starter deploy drained`. The values are devstack's (embedded server);
// deploy/temporal/dynamicconfig/syncbridge.yaml, which compose mounts,
// keeps the server's defaults.
const shortDrainage = `
# Added by rehearsal up --short-drainage (not in compose's dynamic config).
matching.wv.VersionDrainageStatusVisibilityGracePeriod:
  - value: 3s
    constraints: {}
matching.wv.VersionDrainageStatusRefreshInterval:
  - value: 3s
    constraints: {}
`

// rehearsalDynamicConfig returns the dynamic config file the server reads:
// deploy/'s own, or with ShortDrainage a copy of it in Dir with
// shortDrainage appended (deploy/'s file stays the one source; the copy is
// rewritten on every up).
func rehearsalDynamicConfig(o Options) (string, error) {
	src := filepath.Join(o.Repo, "deploy/temporal/dynamicconfig/syncbridge.yaml")
	if !o.ShortDrainage {
		return src, nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("rehearsal: dynamic config: %w", err)
	}
	if strings.Contains(string(b), "VersionDrainageStatus") {
		return "", fmt.Errorf("rehearsal: %s already sets the drainage intervals; --short-drainage would repeat a key", src)
	}
	dst := filepath.Join(o.Dir, "dynamicconfig.yaml")
	if err := os.WriteFile(dst, append(b, shortDrainage...), 0o644); err != nil {
		return "", fmt.Errorf("rehearsal: dynamic config: %w", err)
	}
	return dst, nil
}

// setupAppDB gives the workers a fresh database and an account of their
// own, as a PolarDB cluster would.
func setupAppDB(ctx context.Context, addr, password string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", addr
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + AppDB,
		"CREATE DATABASE " + AppDB,
		"CREATE USER IF NOT EXISTS '" + appUser + "'@'127.0.0.1' IDENTIFIED BY '" + password + "'",
		"ALTER USER '" + appUser + "'@'127.0.0.1' IDENTIFIED BY '" + password + "'",
		"GRANT ALL ON " + AppDB + ".* TO '" + appUser + "'@'127.0.0.1'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("rehearsal: MariaDB %s: %s: %w", addr, strings.SplitN(q, " IDENTIFIED", 2)[0], err)
		}
	}
	return nil
}

// registerNamespace does deploy/temporal/init-namespace.sh's steps through
// the same API the temporal CLI calls (the CLI is not part of the pinned
// modules): create the namespace with its retention (or set it), add the
// search attributes it lacks, wait until a query naming them is accepted.
func registerNamespace(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var tc client.Client
	for {
		var err error
		if tc, err = client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}}); err == nil {
			if _, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err == nil {
				break
			}
			tc.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rehearsal: Temporal at %s not healthy: %v", addr, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	defer tc.Close()
	ws, op := tc.WorkflowService(), tc.OperatorService()
	retry := func(what string, f func() error) error {
		for {
			err := f()
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("rehearsal: %s: %w", what, err)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	if err := retry("register namespace "+Namespace, func() error {
		_, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: Namespace})
		if _, missing := err.(*serviceerror.NamespaceNotFound); missing {
			_, err = ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
				Namespace: Namespace, WorkflowExecutionRetentionPeriod: durationpb.New(Retention)})
			if _, exists := err.(*serviceerror.NamespaceAlreadyExists); exists {
				err = nil
			}
		}
		return err
	}); err != nil {
		return err
	}
	want := searchattr.All()
	if err := retry("add search attributes", func() error {
		have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: Namespace})
		if err != nil {
			return err
		}
		missing := map[string]enumspb.IndexedValueType{}
		for n, t := range want {
			if _, ok := have.GetCustomAttributes()[n]; !ok {
				missing[n] = t
			}
		}
		if len(missing) == 0 {
			return nil
		}
		_, err = op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: Namespace, SearchAttributes: missing})
		return err
	}); err != nil {
		return err
	}
	var probe []string
	for _, n := range names(want) {
		probe = append(probe, "`"+n+"` IS NULL")
	}
	return retry("search attributes not queryable", func() error {
		_, err := ws.CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: Namespace, Query: strings.Join(probe, " AND ")})
		return err
	})
}

// moduleDir is where the Go toolchain keeps a pinned module's files
// (schemas, the UI's config templates).
func moduleDir(repo, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("rehearsal: locate module %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("rehearsal: module %s is not downloaded (go mod download)", module)
	}
	return dir, nil
}

func port(addr string) string { _, p, _ := strings.Cut(addr, ":"); return p }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func names(m map[string]enumspb.IndexedValueType) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// quietLogger drops the SDK client's logs: up prints its own steps.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
