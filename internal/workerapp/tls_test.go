package workerapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	serverconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	serverlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
)

// TestTLSConnections proves the TLS settings against real servers: a
// MariaDB that requires secure transport and a Temporal frontend that
// requires a client certificate, both with certificates from a CA made
// here. The right CA connects; another CA, no client certificate or no TLS
// is refused. Finally a whole worker runs over both and reports ready.
func TestTLSConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB server and a Temporal server")
	}
	dir := t.TempDir()
	good := newTestCA(t, dir, "good")
	evil := newTestCA(t, dir, "evil") // same names, different key: must not be trusted
	goodCA, evilCA := good.certFile, evil.certFile

	const apiKey = "tmprl-test-key-0123456789"
	db := startTLSMariaDB(t, dir, good)
	tp := startTLSTemporal(t, dir, good, apiKey)
	clientCert, clientKey := good.issue(t, "syncbridge-worker", false)
	evilCert, evilKey := evil.issue(t, "syncbridge-worker", false)

	base := map[string]string{
		"ROCKETMQ_ENDPOINT":  "http://127.0.0.1:1",
		"ALIBABA_ACCESS_KEY": "ak",
		"ALIBABA_SECRET_KEY": "sk",
		"ROCKETMQ_TOPIC":     "t",
		"ROCKETMQ_GROUP_ID":  "GID_t",
		"POLARDB_ENDPOINT":   db.addr,
		"POLARDB_USER":       db.user,
		"POLARDB_PASSWORD":   db.password,
		"POLARDB_DATABASE":   db.database,
		"TEMPORAL_ADDRESS":   tp.addr,
		"TEMPORAL_NAMESPACE": "default",
		// Encrypted, as production must be.
		"SYNCBRIDGE_PAYLOAD_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	}
	load := func(t *testing.T, kv ...string) config.Config {
		t.Helper()
		cfg, err := config.Load(func(k string) string { return with(base, kv...)[k] })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("database", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		cfg := load(t, "POLARDB_TLS", "true", "POLARDB_TLS_CA", goodCA)
		conn, err := store.Open(ctx, cfg.DB.DSN, 2)
		if err != nil {
			t.Fatalf("right CA refused: %v", err)
		}
		var name, cipher string
		if err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if cipher == "" {
			t.Fatal("connected without TLS")
		}

		cfg = load(t, "POLARDB_TLS", "true", "POLARDB_TLS_CA", evilCA)
		if conn, err := store.Open(ctx, cfg.DB.DSN, 2); err == nil {
			conn.Close()
			t.Fatal("a server certificate from another CA was accepted")
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("wrong CA: want a certificate error, got %v", err)
		} else {
			t.Logf("wrong CA refused: %v", err)
		}

		// The server requires TLS: without it the same account is refused,
		// so the successes above really went through TLS.
		cfg = load(t)
		if conn, err := store.Open(ctx, cfg.DB.DSN, 2); err == nil {
			conn.Close()
			t.Fatal("plaintext connection accepted by a server requiring TLS")
		} else {
			t.Logf("plaintext refused: %v", err)
		}

		cfg = load(t, "POLARDB_TLS", "skip-verify")
		conn, err = store.Open(ctx, cfg.DB.DSN, 2)
		if err != nil {
			t.Fatalf("skip-verify: %v", err)
		}
		conn.Close()
	})

	t.Run("temporal", func(t *testing.T) {
		dial := func(t *testing.T, kv ...string) error {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, load(t, kv...), quietLogger(), nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
				return err
			}
			_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			return err
		}
		mtls := []string{"TEMPORAL_TLS_CA", goodCA, "TEMPORAL_TLS_CERT", clientCert, "TEMPORAL_TLS_KEY", clientKey, "TEMPORAL_TLS_SERVER_NAME", "localhost"}

		if err := dial(t, mtls...); err != nil {
			t.Fatalf("mTLS with the right CA and certificate refused: %v", err)
		}
		// The server's certificate has 127.0.0.1 among its names, so the
		// default (host of TEMPORAL_ADDRESS) verifies too.
		if err := dial(t, "TEMPORAL_TLS_CA", goodCA, "TEMPORAL_TLS_CERT", clientCert, "TEMPORAL_TLS_KEY", clientKey); err != nil {
			t.Fatalf("mTLS without a server name override: %v", err)
		}
		err := dial(t, "TEMPORAL_TLS_CA", evilCA, "TEMPORAL_TLS_CERT", clientCert, "TEMPORAL_TLS_KEY", clientKey)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("wrong CA: want a certificate error, got %v", err)
		}
		t.Logf("wrong CA refused: %v", err)
		for _, c := range []struct {
			what string
			kv   []string
		}{
			{"a client certificate from another CA", []string{"TEMPORAL_TLS_CA", goodCA, "TEMPORAL_TLS_CERT", evilCert, "TEMPORAL_TLS_KEY", evilKey}},
			{"no client certificate", []string{"TEMPORAL_TLS_CA", goodCA}},
			{"plaintext", nil},
		} {
			err := dial(t, c.kv...)
			if err == nil {
				t.Fatalf("%s accepted by a frontend requiring mTLS", c.what)
			}
			t.Logf("%s refused: %v", c.what, err)
		}

		// API key: sent as a bearer token over TLS; the server's claim
		// mapper refuses any other token.
		tp.tokens.reset()
		if err := dial(t, append(mtls, "TEMPORAL_API_KEY", apiKey)...); err != nil {
			t.Fatalf("right API key refused: %v", err)
		}
		if !tp.tokens.saw("Bearer " + apiKey) {
			t.Fatal("the API key never reached the server")
		}
		err = dial(t, append(mtls, "TEMPORAL_API_KEY", "tmprl-wrong-key")...)
		var denied *serviceerror.PermissionDenied
		if !errors.As(err, &denied) {
			t.Fatalf("wrong API key: want PermissionDenied, got %v", err)
		}
		t.Logf("wrong API key refused: %v", err)
	})

	t.Run("worker", func(t *testing.T) {
		emu, err := mqemu.New(mqemu.Config{
			Credentials: []mqemu.Credential{{AccessKey: "ak", SecretKey: "sk-worker-tls"}},
			Topics:      []string{"t"},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := mqemu.Serve("127.0.0.1:0", emu)
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		defer srv.Close()

		cfg := load(t,
			"ROCKETMQ_ENDPOINT", srv.URL, "ALIBABA_SECRET_KEY", "sk-worker-tls",
			"POLARDB_TLS", "true", "POLARDB_TLS_CA", goodCA,
			"TEMPORAL_TLS_CA", goodCA, "TEMPORAL_TLS_CERT", clientCert, "TEMPORAL_TLS_KEY", clientKey, "TEMPORAL_API_KEY", apiKey,
			"SYNCBRIDGE_TASK_QUEUE", "tls-"+randomSuffix(t), "SYNCBRIDGE_POLLERS", "0",
			"SYNCBRIDGE_METRICS_ADDR", "127.0.0.1:0", "SYNCBRIDGE_HEALTH_INTERVAL", "200ms")
		addr, stop := runWorker(t, cfg)
		defer func() {
			if err := stop(); err != nil {
				t.Errorf("worker: %v", err)
			}
		}()
		rd := waitReadiness(t, addr, 30*time.Second, func(r Readiness) bool { return r.Ready })
		for _, dep := range []string{DepTemporal, DepDatabase, DepMQ} {
			if !rd.Dependencies[dep].OK {
				t.Fatalf("%s not ok: %+v", dep, rd)
			}
		}
		t.Logf("worker ready over TLS: %+v", rd)
	})
}

// with returns a copy of m with key/value pairs applied.
func with(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runWorker runs Run with cfg until stop; it returns the metrics address.
func runWorker(t testing.TB, cfg config.Config) (string, func() error) {
	t.Helper()
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: quietLogger(), Ready: func(a string) { ready <- a }})
	}()
	select {
	case addr := <-ready:
		var once sync.Once
		var runErr error
		stop := func() error {
			once.Do(func() {
				cancel()
				select {
				case runErr = <-done:
				case <-time.After(StopTimeout + 30*time.Second):
					runErr = errors.New("worker did not stop")
				}
			})
			return runErr
		}
		t.Cleanup(func() { _ = stop() })
		return addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("worker exited at start: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("worker not ready after 90s")
	}
	return "", nil
}

// getReadiness fetches /readyz and checks the status code agrees with the
// body.
func getReadiness(t testing.TB, addr string) Readiness {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r Readiness
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if want := map[bool]int{true: http.StatusOK, false: http.StatusServiceUnavailable}[r.Ready]; resp.StatusCode != want {
		t.Fatalf("/readyz answered %d with ready=%t", resp.StatusCode, r.Ready)
	}
	return r
}

func waitReadiness(t testing.TB, addr string, timeout time.Duration, cond func(Readiness) bool) Readiness {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := getReadiness(t, addr)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness condition not met after %s; last: %+v", timeout, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testCA is a throwaway certificate authority.
type testCA struct {
	dir, name string
	cert      *x509.Certificate
	key       *ecdsa.PrivateKey
	certFile  string
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(time.Now().UnixNano() + serial.n)
}

func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "syncbridge test CA", Organization: []string{name}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, name: name, cert: cert, key: key, certFile: filepath.Join(dir, name+"-ca.crt")}
	writePEM(t, ca.certFile, "CERTIFICATE", der)
	return ca
}

// issue signs a leaf certificate for 127.0.0.1 and localhost (server) or
// a client certificate, and writes it and its key.
func (ca *testCA) issue(t testing.TB, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(ca.dir, ca.name+"-"+cn)
	writePEM(t, base+".crt", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", kder)
	return base + ".crt", base + ".key"
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tlsMariaDB is a private mariadbd requiring TLS, with one account.
type tlsMariaDB struct {
	addr, user, password, database string
}

// startTLSMariaDB runs a second mariadbd on a free port with its own data
// directory (the machine's shared server is never touched) and stops it
// at cleanup.
func startTLSMariaDB(t *testing.T, dir string, ca *testCA) tlsMariaDB {
	t.Helper()
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		if mariadbd, err = exec.LookPath("/usr/sbin/mariadbd"); err != nil {
			t.Skip("mariadbd not installed (Debian package mariadb-server): cannot run the database TLS test")
		}
	}
	installDB, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		t.Skip("mariadb-install-db not installed (Debian package mariadb-server): cannot run the database TLS test")
	}
	srvCert, srvKey := ca.issue(t, "mariadb", true)
	root := filepath.Join(dir, "mariadb")
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(installDB, "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--user="+currentUser()).CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}

	port := freeTCPPort(t)
	logFile := filepath.Join(root, "error.log")
	cmd := exec.Command(mariadbd, "--no-defaults",
		"--datadir="+data, "--port="+strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--socket="+filepath.Join(root, "sock"), "--pid-file="+filepath.Join(root, "pid"),
		"--log-error="+logFile, "--user="+currentUser(),
		"--skip-log-bin", "--innodb-buffer-pool-size=16M", "--max-connections=50",
		"--ssl-ca="+ca.certFile, "--ssl-cert="+srvCert, "--ssl-key="+srvKey,
		"--require-secure-transport=ON")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // mariadbd ignores SIGINT
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logTail := func() string {
		b, _ := os.ReadFile(logFile)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return string(b)
	}

	// Administer it over TLS as root, then hand tests a normal account.
	admin, err := config.Load(func(k string) string {
		return map[string]string{
			"ROCKETMQ_ENDPOINT": "http://127.0.0.1:1", "ALIBABA_ACCESS_KEY": "x", "ALIBABA_SECRET_KEY": "x",
			"ROCKETMQ_TOPIC": "x", "ROCKETMQ_GROUP_ID": "x", "SYNCBRIDGE_PAYLOAD_PLAINTEXT": "true",
			"POLARDB_ENDPOINT": fmt.Sprintf("127.0.0.1:%d", port), "POLARDB_USER": "root", "POLARDB_DATABASE": "mysql",
			"POLARDB_TLS": "true", "POLARDB_TLS_CA": ca.certFile,
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var db *sql.DB
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		db, err = store.Open(ctx, admin.DB.DSN, 1)
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("mariadbd exited: %v\n%s", werr, logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadbd not reachable over TLS after 60s: %v\n%s", err, logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer db.Close()
	m := tlsMariaDB{addr: fmt.Sprintf("127.0.0.1:%d", port), user: "sync", password: "pw-" + randomSuffix(t), database: "records"}
	for _, stmt := range []string{
		"CREATE DATABASE records",
		"CREATE USER 'sync'@'%' IDENTIFIED BY '" + m.password + "' REQUIRE SSL",
		"GRANT ALL ON records.* TO 'sync'@'%'",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", strings.SplitN(stmt, " IDENTIFIED", 2)[0], err)
		}
	}
	return m
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

// tokenLog records the bearer tokens the test server saw.
type tokenLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (l *tokenLog) reset() { l.mu.Lock(); l.seen = map[string]bool{}; l.mu.Unlock() }

func (l *tokenLog) saw(tok string) bool { l.mu.Lock(); defer l.mu.Unlock(); return l.seen[tok] }

// apiKeyMapper accepts requests with no token (the server's own system
// worker, authenticated by its certificate) or with the one API key.
type apiKeyMapper struct {
	want string
	log  *tokenLog
}

func (m *apiKeyMapper) GetClaims(ai *authorization.AuthInfo) (*authorization.Claims, error) {
	if ai.AuthToken != "" {
		m.log.mu.Lock()
		if m.log.seen == nil {
			m.log.seen = map[string]bool{}
		}
		m.log.seen[ai.AuthToken] = true
		m.log.mu.Unlock()
		if ai.AuthToken != m.want {
			return nil, errors.New("unknown API key")
		}
	}
	return &authorization.Claims{System: authorization.RoleAdmin}, nil
}

type tlsTemporal struct {
	addr   string
	tokens *tokenLog
}

// startTLSTemporal runs a single-node Temporal server whose frontend
// requires TLS with a client certificate from ca and checks bearer tokens
// against apiKey. The dev stack has no TLS option, so this builds the
// server directly; everything else mirrors it (in-memory SQLite, loopback).
func startTLSTemporal(t *testing.T, dir string, ca *testCA, apiKey string) *tlsTemporal {
	t.Helper()
	srvCert, srvKey := ca.issue(t, "temporal-frontend", true)
	sysCert, sysKey := ca.issue(t, "temporal-system-worker", false)
	host := "127.0.0.1"

	sqlConf := &serverconfig.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      "tlstest-" + randomSuffix(t),
		ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"},
	}
	nsConf, err := sqliteschema.NewNamespaceConfig("active", "default", false, searchattr.All())
	if err != nil {
		t.Fatal(err)
	}
	if err := sqliteschema.CreateNamespaces(sqlConf, nsConf); err != nil {
		t.Fatal(err)
	}

	frontendPort := freeTCPPort(t)
	frontend := net.JoinHostPort(host, strconv.Itoa(frontendPort))
	conf := &serverconfig.Config{}
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Global.TLS = serverconfig.RootTLS{
		Frontend: serverconfig.GroupTLS{Server: serverconfig.ServerTLS{
			CertFile: srvCert, KeyFile: srvKey,
			ClientCAFiles: []string{ca.certFile}, RequireClientAuth: true,
		}},
		SystemWorker: serverconfig.WorkerTLS{
			CertFile: sysCert, KeyFile: sysKey,
			Client: serverconfig.ClientTLS{ServerName: "localhost", RootCAFiles: []string{ca.certFile}},
		},
	}
	conf.Persistence.DefaultStore = sqliteplugin.PluginName
	conf.Persistence.VisibilityStore = sqliteplugin.PluginName
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]serverconfig.DataStore{sqliteplugin.PluginName: {SQL: sqlConf}}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{
			"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]serverconfig.Service{}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, svc := range temporal.DefaultServices {
		port := frontendPort
		if svc != string(primitives.FrontendService) {
			port = freeTCPPort(t)
		}
		conf.Services[svc] = serverconfig.Service{RPC: serverconfig.RPC{GRPCPort: port, BindOnIP: host}}
		hosts[primitives.ServiceName(svc)] = static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(port)))
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend

	logFile := filepath.Join(dir, "temporal.log")
	tokens := &tokenLog{}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(serverlog.NewZapLogger(serverlog.BuildZapLogger(serverlog.Config{Level: "error", OutputFile: logFile}))),
		temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
		temporal.WithClaimMapper(func(*serverconfig.Config) authorization.ClaimMapper {
			return &apiKeyMapper{want: "Bearer " + apiKey, log: tokens}
		}),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{}),
	)
	if err != nil {
		t.Fatalf("build TLS Temporal server: %v", err)
	}
	if err := srv.Start(); err != nil {
		_ = srv.Stop()
		t.Fatalf("start TLS Temporal server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop TLS Temporal server: %v", err)
		}
	})

	// Ready when a properly authenticated client gets an answer.
	clientCert, clientKey := ca.issue(t, "readiness-probe", false)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{
			"ROCKETMQ_ENDPOINT": "http://127.0.0.1:1", "ALIBABA_ACCESS_KEY": "x", "ALIBABA_SECRET_KEY": "x",
			"ROCKETMQ_TOPIC": "x", "ROCKETMQ_GROUP_ID": "x", "POLARDB_ENDPOINT": "127.0.0.1:1", "POLARDB_USER": "x",
			"SYNCBRIDGE_PAYLOAD_PLAINTEXT": "true",
			"TEMPORAL_ADDRESS":             frontend, "TEMPORAL_TLS_CA": ca.certFile,
			"TEMPORAL_TLS_CERT": clientCert, "TEMPORAL_TLS_KEY": clientKey,
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := Dial(ctx, cfg, quietLogger(), nil)
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			c.Close()
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			t.Fatalf("TLS Temporal server not ready after 90s: %v\n%s", err, tail(b, 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}
	return &tlsTemporal{addr: frontend, tokens: tokens}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
