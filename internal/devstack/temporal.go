package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Default addresses. They are the ones the Temporal CLI's dev server uses, so
// docs, SDK defaults and muscle memory all agree.
const (
	DefaultFrontendAddr = "127.0.0.1:7233"
	DefaultUIAddr       = "127.0.0.1:8233"
	DefaultNamespace    = "default"
	// DefaultRetention is how long closed workflows stay visible in a
	// namespace the dev stack creates: a working day and then some.
	DefaultRetention = 24 * time.Hour
)

// TemporalOptions configures StartTemporal. Zero values give the documented
// defaults.
type TemporalOptions struct {
	// FrontendAddr is the host:port of the gRPC frontend. Default
	// DefaultFrontendAddr ("127.0.0.1:7233"); port 0 picks a free port.
	FrontendAddr string
	// UIAddr is the host:port of the Web UI. "" starts no UI; port 0 picks a
	// free port. The CLI-compatible choice is DefaultUIAddr.
	UIAddr string
	// UICodecEndpoint is the codec server the Web UI decodes payloads
	// through (the browser calls it, so it must allow the UI's origin);
	// "" shows payloads as the server stores them.
	UICodecEndpoint string
	// DBPath is the SQLite file holding all server state. "" keeps it in
	// memory: every workflow is gone when the process exits. A missing file
	// is created with the schema; its directory must exist.
	DBPath string
	// Namespace is created at start if it does not exist. Default "default".
	Namespace string
	// Retention is how long closed workflows are kept in a namespace created
	// now. An existing namespace keeps its own. Default DefaultRetention (24h).
	Retention time.Duration
	// SearchAttributes are registered on Namespace at start. Re-registering
	// an existing attribute with the same type is a no-op, so restarting on
	// a file DB is fine; the same name with another type is an error.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Logger receives the server's logs at LogLevel and above. nil discards.
	Logger *slog.Logger
	// LogLevel is the least severe server log forwarded to Logger. nil =
	// slog.LevelWarn: the server logs hundreds of info lines at start.
	LogLevel slog.Leveler
	// DynamicConfig sets server dynamic config by key (e.g.
	// "frontend.namespaceRPS.visibility": 200) on top of the dev defaults.
	DynamicConfig map[string]any
}

func (o TemporalOptions) withDefaults() TemporalOptions {
	if o.FrontendAddr == "" {
		o.FrontendAddr = DefaultFrontendAddr
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.LogLevel == nil {
		o.LogLevel = slog.LevelWarn
	}
	return o
}

// Temporal is a complete Temporal server (frontend, history, matching and
// worker services) running inside this process on loopback, optionally with
// the Web UI in front of it.
type Temporal struct {
	srv    temporal.Server
	ui     *webUI
	addr   string
	ns     string
	dbPath string
	level  *slog.LevelVar

	stopOnce sync.Once
	stopErr  error
}

// StartTemporal starts the server and returns once the frontend answers, the
// namespace exists and every search attribute in o is usable in a visibility
// query. On error nothing is left running. ctx bounds the start only.
//
// In-memory databases cannot be freed: the server's SQLite driver keeps one
// connection per database for the life of the process. A test binary should
// start one in-memory server, not one per test.
func StartTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	o = o.withDefaults()
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	frontend, err := reserveAddr(o.FrontendAddr, "Temporal frontend")
	if err != nil {
		return nil, err
	}
	// The UI's port is held, not just checked, until the UI binds it after
	// the server is up: a port released that early is free for anything
	// else meanwhile (the server's own internal ports, any outgoing
	// connection on the machine), and the UI server exits the process
	// when its bind fails.
	var uiLn net.Listener
	if o.UIAddr != "" {
		if uiLn, err = holdAddr(o.UIAddr, "Temporal Web UI"); err != nil {
			return nil, err
		}
		defer uiLn.Close() // a second Close, after startWebUI's, is harmless
	}
	host, portStr, _ := net.SplitHostPort(frontend)
	port, _ := strconv.Atoi(portStr)

	sqlConf, err := prepareSQLite(o)
	if err != nil {
		return nil, err
	}
	conf, err := serverConfig(host, port, sqlConf)
	if err != nil {
		return nil, err
	}

	level := new(slog.LevelVar)
	level.Set(o.LogLevel.Level())
	var srv temporal.Server
	err = catchFatal(func() error {
		var err error
		srv, err = temporal.NewServer(
			temporal.WithConfig(conf),
			temporal.ForServices(temporal.DefaultServices),
			temporal.WithStaticHosts(staticHosts(conf)),
			temporal.WithLogger(newServerLogger(logger, level)),
			temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
			temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper {
				return authorization.NewNoopClaimMapper()
			}),
			temporal.WithDynamicConfigClient(devDynamicConfig(o.DynamicConfig)),
		)
		if err != nil {
			return fmt.Errorf("devstack: build temporal server: %w", err)
		}
		if err := srv.Start(); err != nil {
			_ = srv.Stop() // half-started services hold ports; the start error is the one to report
			return fmt.Errorf("devstack: start temporal server: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t := &Temporal{srv: srv, addr: frontend, ns: o.Namespace, dbPath: sqlConfPath(o.DBPath, sqlConf), level: level}

	if err := t.awaitReady(ctx, o.SearchAttributes); err != nil {
		_ = t.Stop()
		return nil, err
	}
	if uiLn != nil {
		ui, err := startWebUI(ctx, uiLn, frontend, o.Namespace, o.UICodecEndpoint)
		if err != nil {
			_ = t.Stop()
			return nil, err
		}
		t.ui = ui
	}
	logger.Info("temporal server ready", "frontend", t.addr, "namespace", t.ns,
		"ui", t.UIURL(), "db", dbDescription(o.DBPath))
	return t, nil
}

// Address is the frontend's host:port, for client.Options.HostPort.
func (t *Temporal) Address() string { return t.addr }

// Namespace is the namespace created at start.
func (t *Temporal) Namespace() string { return t.ns }

// DBPath is the absolute path of the SQLite file, "" when in memory.
func (t *Temporal) DBPath() string { return t.dbPath }

// UIURL is the Web UI's base URL, "" when no UI was started.
func (t *Temporal) UIURL() string {
	if t.ui == nil {
		return ""
	}
	return t.ui.url
}

// Stop shuts down the UI and then the server. Workers and clients connected
// to it should be stopped first; theirs are the only errors after Stop.
// Stop is idempotent.
func (t *Temporal) Stop() error {
	t.stopOnce.Do(func() {
		// Every poller the server cancels on the way down logs a warning;
		// none of them is news during a requested stop.
		t.level.Set(slog.LevelError)
		var errs []error
		if t.ui != nil {
			errs = append(errs, t.ui.stop())
		}
		if err := t.srv.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("devstack: stop temporal server: %w", err))
		}
		t.stopErr = errors.Join(errs...)
	})
	return t.stopErr
}

// reserveAddr resolves port 0 to a free port and otherwise checks the port is
// free. The server's own listener failures end the process, so a clear error
// here is the only chance to say which port and why.
func reserveAddr(addr, what string) (string, error) {
	ln, err := holdAddr(addr, what)
	if err != nil {
		return "", err
	}
	got := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("devstack: release probe listener on %s: %w", got, err)
	}
	return got, nil
}

// holdAddr listens on addr (port 0: a free port), an empty host meaning
// 127.0.0.1, with the error a user can act on when the port is taken.
func holdAddr(addr, what string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: %s address %q: %w", what, addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("devstack: %s address %s is not available (is another dev stack running? pick another port): %w",
			what, addr, err)
	}
	return ln, nil
}

// freePort returns a port on host that was free a moment ago.
func freePort(host string) (int, error) {
	addr, err := reserveAddr(net.JoinHostPort(host, "0"), "internal service")
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(addr)
	return strconv.Atoi(p)
}

func sqlConfPath(requested string, c *config.SQL) string {
	if requested == "" {
		return ""
	}
	return c.DatabaseName
}

func dbDescription(path string) string {
	if path == "" {
		return "in memory (lost on exit)"
	}
	return path
}

// prepareSQLite builds the persistence config, creates the schema for a new
// file and pre-creates the namespace with its search attributes, so a fresh
// server needs no registration round trip before the first workflow.
func prepareSQLite(o TemporalOptions) (*config.SQL, error) {
	sqlConf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if o.DBPath == "" {
		// A random name keeps two servers in one process apart: the SQLite
		// driver shares in-memory databases by name.
		sqlConf.DatabaseName = "devstack-" + strconv.FormatUint(rand.Uint64(), 36)
		sqlConf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
	} else {
		path, err := filepath.Abs(o.DBPath)
		if err != nil {
			return nil, fmt.Errorf("devstack: temporal db path %q: %w", o.DBPath, err)
		}
		sqlConf.DatabaseName = path
		sqlConf.ConnectAttributes = map[string]string{"mode": "rwc"}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(filepath.Dir(path)); err != nil {
				return nil, fmt.Errorf("devstack: temporal db directory: %w", err)
			}
			if err := sqliteschema.SetupSchema(sqlConf); err != nil {
				return nil, fmt.Errorf("devstack: create temporal schema in %s: %w", path, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("devstack: temporal db file: %w", err)
		}
	}
	nsConf, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("devstack: namespace %q: %w", o.Namespace, err)
	}
	nsConf.Detail.Config.Retention = durationpb.New(o.Retention)
	if err := sqliteschema.CreateNamespaces(sqlConf, nsConf); err != nil {
		return nil, fmt.Errorf("devstack: create namespace %q: %w", o.Namespace, err)
	}
	return sqlConf, nil
}

const clusterName = "active"

// serverConfig is a single-node cluster: all four services on loopback, the
// frontend on the requested port and the others on free ones, one history
// shard (plenty for one developer, and it keeps the SQLite file small).
func serverConfig(host string, frontendPort int, sqlConf *config.SQL) (*config.Config, error) {
	frontendAddr := net.JoinHostPort(host, strconv.Itoa(frontendPort))
	// The frontend's HTTP API (and Nexus, which rides on it) is off without
	// a port, and the server warns about that at every start.
	httpPort, err := freePort(host)
	if err != nil {
		return nil, err
	}
	conf := &config.Config{}
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence.DefaultStore = sqliteplugin.PluginName
	conf.Persistence.VisibilityStore = sqliteplugin.PluginName
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlConf}}
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontendAddr,
				HTTPAddress:            net.JoinHostPort(host, strconv.Itoa(httpPort)),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: frontendPort, HTTPPort: httpPort, BindOnIP: host}},
	}
	for _, svc := range temporal.DefaultServices {
		if svc == string(primitives.FrontendService) {
			continue
		}
		port, err := freePort(host)
		if err != nil {
			return nil, err
		}
		conf.Services[svc] = config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: host}}
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontendAddr
	return conf, nil
}

// staticHosts replaces ringpop membership: with every service in one process
// there is nothing to gossip about, and ringpop's shutdown is racy.
func staticHosts(conf *config.Config) map[primitives.ServiceName]static.Hosts {
	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, svc := range conf.Services {
		addr := net.JoinHostPort(svc.RPC.BindOnIP, strconv.Itoa(svc.RPC.GRPCPort))
		hosts[primitives.ServiceName(name)] = static.SingleLocalHost(addr)
	}
	return hosts
}

// devDynamicConfig tunes a production server for one developer's laptop and
// for tests: small caches, and room for the Web UI's and tests' frequent
// visibility queries that the default per-namespace rate limit would refuse.
func devDynamicConfig(extra map[string]any) dynamicconfig.StaticClient {
	dc := dynamicconfig.StaticClient{
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 200,
		// Search attributes added while running become visible at once
		// instead of after the cache's refresh period.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// Worker Deployment Versioning (on by default in this server):
		// whether an old build is drained is checked a grace period after
		// it stopped taking new work, for visibility to catch up, then
		// every refresh interval; 3 minutes each by default. The
		// in-process server's visibility is written within a second, and
		// `starter deploy drained` on a dev stack or in a test should not
		// wait minutes for it.
		dynamicconfig.VersionDrainageStatusVisibilityGracePeriod.Key(): 3 * time.Second,
		dynamicconfig.VersionDrainageStatusRefreshInterval.Key():       3 * time.Second,
		// Flood mode's notice runs list up to 16 KiB of keys in SyncKeys,
		// as deploy/temporal/dynamicconfig allows a cluster; the default
		// 2 KiB would make a worker halve its runs down to it.
		dynamicconfig.SearchAttributesSizeOfValueLimit.Key(): 16 << 10,
	}
	for k, v := range extra {
		dc[dynamicconfig.MakeKey(k)] = v
	}
	return dc
}

// awaitReady dials the frontend, registers the search attributes a file DB
// may lack, and waits until a visibility query naming all of them is
// accepted: that is what a worker upserting them needs.
func (t *Temporal) awaitReady(ctx context.Context, attrs map[string]enumspb.IndexedValueType) error {
	// A caller without a deadline must still get an error, not a hang, when
	// an attribute never becomes usable.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  t.addr,
		Namespace: t.ns,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return fmt.Errorf("devstack: temporal frontend %s did not answer: %w", t.addr, err)
	}
	defer c.Close()

	if err := registerSearchAttributes(ctx, c.OperatorService(), t.ns, attrs); err != nil {
		return err
	}
	query := searchAttributeProbe(attrs)
	for {
		_, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: t.ns,
			Query:     query,
		})
		if err == nil {
			return nil
		}
		var invalid *serviceerror.InvalidArgument
		var notFound *serviceerror.NamespaceNotFound
		if !errors.As(err, &invalid) && !errors.As(err, &notFound) {
			return fmt.Errorf("devstack: temporal visibility not ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: search attributes of %q not usable yet (%v): %w", t.ns, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// registerSearchAttributes adds the attributes the namespace lacks. A new
// namespace already has them (prepareSQLite); an older file DB may not.
func registerSearchAttributes(ctx context.Context, op operatorservice.OperatorServiceClient,
	ns string, want map[string]enumspb.IndexedValueType) error {
	if len(want) == 0 {
		return nil
	}
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return fmt.Errorf("devstack: list search attributes of %q: %w", ns, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		if _, ok := have.GetSystemAttributes()[name]; ok {
			return fmt.Errorf("devstack: search attribute %q is a system attribute", name)
		}
		got, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return fmt.Errorf("devstack: search attribute %q exists as %s, want %s (the DB file was made for another version; delete it or rename the attribute)",
				name, got, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        ns,
		SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("devstack: add search attributes %v to %q: %w", sortedNames(missing), ns, err)
	}
	return nil
}

// searchAttributeProbe is a visibility query that is valid only when every
// attribute is known to the frontend's namespace cache.
func searchAttributeProbe(attrs map[string]enumspb.IndexedValueType) string {
	names := sortedNames(attrs)
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "`" + n + "` IS NULL"
	}
	return strings.Join(parts, " AND ")
}

func sortedNames(m map[string]enumspb.IndexedValueType) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
