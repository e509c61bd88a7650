// Package config loads the worker's and starter's settings from the
// environment, in one place, and validates them before anything connects.
//
// Every variable is listed in Vars with its default; the table in
// docs/configuration.md is written from the same list by hand, in the same
// order, and internal/docscheck fails when they drift.
// Secrets may be given directly or as NAME_FILE pointing at a file (the
// usual container-secret convention); they are never printed: String and
// LogValue redact them.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/logging"
)

// Config is the whole runtime configuration.
type Config struct {
	MQ       MQ
	DB       DB
	Temporal Temporal
	Pipeline Pipeline
	// MetricsAddr is where /metrics (Prometheus text) is served; "" disables it.
	MetricsAddr string
	// HealthInterval is how often /readyz's dependency checks run (the
	// endpoints share the metrics listener). Default 5s.
	HealthInterval time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level
	// LogFormat is json (the default: one object a line, for collectors)
	// or text; worker -dev defaults to text (LogFormat).
	LogFormat logging.Format
	// Codec is the codec server the worker serves for the Web UI and CLI
	// (codecserver.go).
	Codec CodecServer
	// Versioning is the worker's place in a Temporal Worker Deployment
	// (versioning.go).
	Versioning Versioning
}

// MQ addresses the RocketMQ HTTP endpoint.
type MQ struct {
	Endpoint   string // http(s) URL of the instance's HTTP endpoint
	AccessKey  string
	SecretKey  string // secret
	InstanceID string // "" for instances without a namespace
	Topic      string
	Group      string // consumer group ID (GID_...)
	Tag        string // tag filter; "" consumes every tag
}

// DB addresses PolarDB / MySQL.
type DB struct {
	// DSN is a go-sql-driver DSN. Built from the POLARDB_* parts when
	// POLARDB_DSN is not given.
	DSN string // secret (contains the password)
	// MaxOpenConns caps the pool: the main lever protecting the database.
	MaxOpenConns int
}

// Temporal addresses the Temporal frontend.
type Temporal struct {
	Address   string
	Namespace string
	TaskQueue string
	// TLS secures the frontend connection (tls.go).
	TLS TemporalTLS
	// APIKey is sent as a bearer token on every call (Temporal Cloud API
	// keys); it turns TLS on unless TEMPORAL_TLS=false.
	APIKey string // secret
}

// Pipeline tunes the pace of the drain.
type Pipeline struct {
	// Pollers is the number of poller workflows per topic/group.
	Pollers int
	// StartPollers makes this worker ensure the poller workflows exist at
	// start. Harmless on every worker of a fleet: IDs are fixed.
	StartPollers bool
	// MaxInFlight caps running record workflows; the poller waits while
	// the cap is reached.
	MaxInFlight int
	// BatchSize is numOfMessages per consume call, 1..16.
	BatchSize int
	// HandoverConcurrency is how many messages of a batch are handed to
	// their record workflows at once.
	HandoverConcurrency int
	// ParkFor is how long a message for a key whose record runs waits for
	// the run to close before it is signalled to it; 0 signals at once.
	ParkFor time.Duration
	// CommitBatch is the most inserts one group-commit transaction takes.
	CommitBatch int
	// BodyBytesInFlight caps the bytes of message bodies the pollers of one
	// worker hold at once.
	BodyBytesInFlight int
	// Flood turns on flood mode: the poller bulk-commits clean messages
	// and hands only exceptions to record workflows.
	Flood bool
	// FloodBatches is how many consume calls one flood group gathers.
	FloodBatches int
	// FloodRowsPerSecond limits bulk-committed rows per worker; 0 is none.
	FloodRowsPerSecond int
	// FloodSlowCommit is the commit latency at which flood groups shrink.
	FloodSlowCommit time.Duration
	// FloodNoticeLease is how long a worker owns the record notices of the
	// conflicts and quarantines it stored before a sweep may start them.
	FloodNoticeLease time.Duration
	// FloodNoticeKeysBytes is the size a notice run's SyncKeys value is
	// filled to; halved (down to 2 KiB) when the server refuses it.
	FloodNoticeKeysBytes int
	// PollWait is the long-poll wait, 1s..30s.
	PollWait time.Duration
	// WorkflowIDPrefix is prepended to the message key to form the record
	// workflow ID.
	WorkflowIDPrefix string
	// AckFlushInterval is how long the acker waits to fill a batch of 16
	// receipt handles before it sends what it has.
	AckFlushInterval time.Duration
	// UnclassifiedRetryFor is how long an insert failing with a database
	// error nobody classified (internal/store.Classify) is retried before
	// the message is quarantined as db_unclassified. Counted from the
	// insert's first attempt.
	UnclassifiedRetryFor time.Duration
	// MaxWorkflowIDBytes is the Temporal server's limit.maxIDLength, in
	// bytes: a message whose prefix + key is longer is quarantined
	// (key_too_long) instead of being refused by Temporal forever.
	MaxWorkflowIDBytes int
	// MaxPayloadBytes is the server's limit.blobSize.error, in bytes: a
	// delivery that would encode larger is quarantined (body_too_large).
	MaxPayloadBytes int
	// MaxBodyBytes is the largest message body accepted, in bytes. It must
	// fit, base64-encoded with room for the delivery's other fields, in
	// MaxPayloadBytes.
	MaxBodyBytes int
	// DeviceTimeNotBefore refuses records whose deviceTimestamp is older
	// (bad_timestamp). Default 1000-01-01, MySQL's oldest DATETIME.
	DeviceTimeNotBefore time.Time
	// DeviceTimeMaxAhead refuses records whose deviceTimestamp is further
	// in the future; 0 (the default) means no such check.
	DeviceTimeMaxAhead time.Duration
	// PayloadKeys encrypt workflow payloads and failure texts with
	// AES-256-GCM so patient data is not plaintext in Temporal history.
	// The first key writes (SYNCBRIDGE_PAYLOAD_KEY); the others
	// (SYNCBRIDGE_PAYLOAD_OLD_KEYS) only read, for rotation. Empty only
	// when PlaintextPayloads is set.
	PayloadKeys []codec.Key // secret
	// PlaintextPayloads is the explicit opt-out
	// (SYNCBRIDGE_PAYLOAD_PLAINTEXT=true): without a key and without it,
	// the worker refuses to start.
	PlaintextPayloads bool
}

// Keyring builds the payload keyring; nil when payloads are plaintext.
func (c Config) Keyring() (*codec.Keyring, error) {
	ks := c.Pipeline.PayloadKeys
	if len(ks) == 0 {
		return nil, nil
	}
	return codec.NewKeyring(ks[0], ks[1:]...)
}

// Var documents one environment variable.
type Var struct {
	Name, Default, Doc string
	Secret             bool
}

// Vars lists every variable the loader reads, in the order of
// docs/configuration.md.
var Vars = []Var{
	{"ROCKETMQ_ENDPOINT", "", "RocketMQ HTTP endpoint URL (required)", false},
	{"ALIBABA_ACCESS_KEY", "", "AccessKey ID (required)", false},
	{"ALIBABA_SECRET_KEY", "", "AccessKey secret (required; or ALIBABA_SECRET_KEY_FILE)", true},
	{"ROCKETMQ_INSTANCE_ID", "", "instance ID; empty for instances without a namespace", false},
	{"ROCKETMQ_TOPIC", "", "topic to drain (required)", false},
	{"ROCKETMQ_GROUP_ID", "", "consumer group ID (required)", false},
	{"ROCKETMQ_TAG", "SyncEvent", "tag filter; '*' for every tag", false},
	{"POLARDB_DSN", "", "full go-sql-driver DSN; overrides the POLARDB_* parts below (or POLARDB_DSN_FILE)", true},
	{"POLARDB_ENDPOINT", "", "host:port (required unless POLARDB_DSN)", false},
	{"POLARDB_USER", "", "user (required unless POLARDB_DSN)", false},
	{"POLARDB_PASSWORD", "", "password (or POLARDB_PASSWORD_FILE)", true},
	{"POLARDB_DATABASE", "syncbridge", "database name", false},
	{"POLARDB_MAX_CONNS", "10", "connection pool cap per worker", false},
	// TLS to the database (tls.go).
	{"POLARDB_TLS", "false", "TLS to the database: false, true (verify), skip-verify or preferred", false},
	{"POLARDB_TLS_CA", "", "PEM CA bundle to verify the server with (needs POLARDB_TLS=true); empty = system roots", false},
	{"POLARDB_TLS_SERVER_NAME", "", "name to verify the server certificate against; empty = host of POLARDB_ENDPOINT", false},
	{"TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port", false},
	{"TEMPORAL_NAMESPACE", "default", "Temporal namespace", false},
	// TLS and authentication to Temporal (tls.go).
	{"TEMPORAL_TLS", "auto", "TLS to the frontend: auto (on when a TLS file, server name or API key is set), true or false", false},
	{"TEMPORAL_TLS_CERT", "", "PEM client certificate for mTLS (with TEMPORAL_TLS_KEY)", false},
	{"TEMPORAL_TLS_KEY", "", "PEM private key of TEMPORAL_TLS_CERT", false},
	{"TEMPORAL_TLS_CA", "", "PEM CA bundle to verify the frontend with; empty = system roots", false},
	{"TEMPORAL_TLS_SERVER_NAME", "", "name to verify the frontend certificate against; empty = host of TEMPORAL_ADDRESS", false},
	{"TEMPORAL_API_KEY", "", "API key sent as a bearer token (or TEMPORAL_API_KEY_FILE)", true},
	{"SYNCBRIDGE_TASK_QUEUE", "syncbridge", "task queue for workflows and activities", false},
	// Worker Deployment Versioning (versioning.go).
	{"SYNCBRIDGE_VERSIONING", "false", "true = join the Worker Deployment: records stay on the build that started them, new work goes to the current version (starter deploy); false = unversioned", false},
	{"SYNCBRIDGE_DEPLOYMENT_NAME", "syncbridge", "Worker Deployment name (no '.' or ':'); one per pipeline", false},
	{"SYNCBRIDGE_BUILD_ID", "", "this build's ID in the deployment; empty = the binary's VCS revision (12 digits), with an executable digest when the tree was modified or VCS info is absent", false},
	{"SYNCBRIDGE_POLLERS", "2", "poller workflows per topic/group", false},
	{"SYNCBRIDGE_START_POLLERS", "true", "ensure poller workflows exist at worker start", false},
	{"SYNCBRIDGE_MAX_INFLIGHT", "200", "running record workflows at which polling pauses", false},
	{"SYNCBRIDGE_BATCH_SIZE", "16", "messages per consume call (1-16)", false},
	{"SYNCBRIDGE_HANDOVER_CONCURRENCY", "16", "messages of a batch handed to their record workflows at once (1-256)", false},
	{"SYNCBRIDGE_PARK_FOR", "2s", "how long a message for a key whose record is running waits for it to finish before it is signalled to it (0s-1m; 0s = signal at once)", false},
	{"SYNCBRIDGE_COMMIT_BATCH", "64", "most inserts sharing one database transaction (group commit, 1-1000)", false},
	{"SYNCBRIDGE_BODY_BYTES_IN_FLIGHT", "67108864", "message-body bytes the pollers of one worker hold at once (1 MiB-4 GiB); a poller waits for room", false},
	{"SYNCBRIDGE_FLOOD_MODE", "false", "flood mode: the poller settles whole groups in bulk, exceptions included, and acks them after commit", false},
	{"SYNCBRIDGE_FLOOD_BATCHES", "16", "flood mode: consume calls gathered into one bulk transaction (1-64)", false},
	{"SYNCBRIDGE_FLOOD_ROWS_PER_SEC", "0", "flood mode: bulk-committed rows per second per worker; 0 = no limit", false},
	{"SYNCBRIDGE_FLOOD_SLOW_COMMIT", "2s", "flood mode: commit latency above which groups shrink (10ms-1m)", false},
	{"SYNCBRIDGE_FLOOD_NOTICE_LEASE", "30s", "flood mode: how long the worker that stored a conflict or quarantine owns starting its notice (the FloodNotice run that shows it) before another worker's sweep takes over (1s-10m)", false},
	{"SYNCBRIDGE_FLOOD_NOTICE_KEYS_BYTES", "16384", "flood mode: size a notice run's SyncKeys value is filled to, up to the server's frontend.searchAttributesSizeOfValueLimit (16 KiB in deploy/'s dynamic config and the dev stack; Temporal's default and Temporal Cloud's are 2 KiB); a worker whose run is refused halves it, down to 2 KiB (2048-65536)", false},
	{"SYNCBRIDGE_POLL_WAIT", "30s", "long-poll wait (1s-30s)", false},
	{"SYNCBRIDGE_WORKFLOW_ID_PREFIX", "", "prefix for record workflow IDs", false},
	{"SYNCBRIDGE_ACK_FLUSH", "200ms", "max wait to coalesce acks into one call of up to 16 handles", false},
	{"SYNCBRIDGE_UNCLASSIFIED_RETRY_FOR", "6h", "how long an insert failing with an unclassified database error is retried before quarantine as db_unclassified (1m-720h)", false},
	{"SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES", "1000", "the Temporal server's limit.maxIDLength (bytes); longer prefix + key is quarantined as key_too_long", false},
	{"SYNCBRIDGE_MAX_PAYLOAD_BYTES", "2097152", "the Temporal server's limit.blobSize.error (bytes); larger deliveries are quarantined as body_too_large", false},
	{"SYNCBRIDGE_MAX_BODY_BYTES", "1048576", "largest message body accepted (bytes); must fit base64-encoded in SYNCBRIDGE_MAX_PAYLOAD_BYTES", false},
	{"SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE", "1000-01-01", "oldest plausible deviceTimestamp (YYYY-MM-DD, UTC); older is quarantined as bad_timestamp", false},
	{"SYNCBRIDGE_DEVICE_TIME_MAX_AHEAD", "0s", "how far in the future a deviceTimestamp may be; further is bad_timestamp; 0s = no limit", false},
	{"SYNCBRIDGE_PAYLOAD_KEY", "", "base64 32-byte key encrypting Temporal payloads and failures (required unless SYNCBRIDGE_PAYLOAD_PLAINTEXT; or _FILE)", true},
	{"SYNCBRIDGE_PAYLOAD_KEY_ID", "", "ID written with each payload for the current key; empty = derived from the key", false},
	{"SYNCBRIDGE_PAYLOAD_OLD_KEYS", "", "read-only keys kept for rotation: comma-separated ID:base64key (or _FILE, one a line)", true},
	{"SYNCBRIDGE_PAYLOAD_PLAINTEXT", "false", "true = run without a payload key, patient data readable in Temporal (explicit opt-out)", false},
	{"SYNCBRIDGE_METRICS_ADDR", "127.0.0.1:9090", "Prometheus /metrics, /healthz and /readyz listen address; 'off' disables", false},
	{"SYNCBRIDGE_HEALTH_INTERVAL", "5s", "how often /readyz re-checks Temporal, the database and the broker (100ms-5m)", false},
	{"SYNCBRIDGE_LOG_LEVEL", "info", "debug, info, warn or error", false},
	{"SYNCBRIDGE_LOG_FORMAT", "json", "json (one object a line) or text (key=value); worker -dev defaults to text", false},
	// Codec server for the Web UI and the temporal CLI (codecserver.go).
	{"SYNCBRIDGE_CODEC_ADDR", "off", "codec server listen address (POST /encode, /decode); 'off' disables", false},
	{"SYNCBRIDGE_CODEC_TOKEN", "", "service tokens the codec server accepts, one a line as name:token (the name goes on the audit trail) or a bare token (or _FILE); a token or an OIDC issuer is required with SYNCBRIDGE_CODEC_ADDR", true},
	{"SYNCBRIDGE_CODEC_OIDC_ISSUER", "", "issuer (iss) of the access tokens the Web UI passes for the signed-in person; empty = access tokens not accepted", false},
	{"SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "", "the issuer's signing keys (jwks_uri); fetched on first use, cached, re-fetched for an unknown key ID (https; http on loopback only)", false},
	{"SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "", "audience (aud) an access token must name (required with the issuer)", false},
	{"SYNCBRIDGE_CODEC_OIDC_GROUPS_CLAIM", "groups", "claim holding the person's groups or roles (string or list); dots walk into objects, e.g. realm_access.roles", false},
	{"SYNCBRIDGE_CODEC_OIDC_GROUPS", "", "comma-separated groups allowed to decode; the token needs one (required with the issuer)", false},
	{"SYNCBRIDGE_CODEC_UI_ORIGIN", "", "Web UI origin granted CORS, e.g. https://temporal-ui.example.com; empty = no browser access", false},
	{"SYNCBRIDGE_CODEC_AUTH", "token", "token, or ui-origin: also accept browser calls from SYNCBRIDGE_CODEC_UI_ORIGIN without a token; only on a loopback SYNCBRIDGE_CODEC_ADDR", false},
	{"SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED", "false", "true = the non-loopback SYNCBRIDGE_CODEC_ADDR is reachable only through a port published on the host's loopback (a container alone on its network), so ui-origin is allowed there", false},
	// Transport overrides (tls.go): plaintext to a non-loopback host is refused without them.
	{"ROCKETMQ_ALLOW_HTTP", "false", "true = accept an http:// ROCKETMQ_ENDPOINT on a non-loopback host", false},
	{"POLARDB_ALLOW_PLAINTEXT", "false", "true = accept POLARDB_TLS=false or preferred to a non-loopback host", false},
	{"TEMPORAL_ALLOW_PLAINTEXT_API_KEY", "false", "true = accept TEMPORAL_API_KEY with TEMPORAL_TLS=false to a non-loopback host", false},
}

// Load reads the configuration through getenv (os.Getenv in production,
// a map in tests) and reports every problem at once.
func Load(getenv func(string) string) (Config, error) {
	l := loader{getenv: getenv}
	var c Config

	c.MQ = MQ{
		Endpoint:   l.required("ROCKETMQ_ENDPOINT"),
		AccessKey:  l.required("ALIBABA_ACCESS_KEY"),
		SecretKey:  l.secret("ALIBABA_SECRET_KEY", true),
		InstanceID: l.str("ROCKETMQ_INSTANCE_ID"),
		Topic:      l.required("ROCKETMQ_TOPIC"),
		Group:      l.required("ROCKETMQ_GROUP_ID"),
		Tag:        l.str("ROCKETMQ_TAG"),
	}
	if c.MQ.Tag == "*" {
		c.MQ.Tag = ""
	}
	if c.MQ.Endpoint != "" && !strings.HasPrefix(c.MQ.Endpoint, "http://") && !strings.HasPrefix(c.MQ.Endpoint, "https://") {
		l.fail("ROCKETMQ_ENDPOINT", "must be an http:// or https:// URL")
	}

	c.DB.MaxOpenConns = l.intIn("POLARDB_MAX_CONNS", 1, 1000)
	if dsn := l.secret("POLARDB_DSN", false); dsn != "" {
		if _, err := mysql.ParseDSN(dsn); err != nil {
			l.fail("POLARDB_DSN", "is not a valid DSN (value not shown)")
		}
		c.DB.DSN = dsn
	} else {
		mc := mysql.NewConfig()
		mc.Net = "tcp"
		mc.Addr = l.required("POLARDB_ENDPOINT")
		mc.User = l.required("POLARDB_USER")
		mc.Passwd = l.secret("POLARDB_PASSWORD", false)
		mc.DBName = l.str("POLARDB_DATABASE")
		if mc.Addr != "" {
			if _, _, err := net.SplitHostPort(mc.Addr); err != nil {
				l.fail("POLARDB_ENDPOINT", "must be host:port")
			}
		}
		c.DB.DSN = mc.FormatDSN()
	}
	c.DB.DSN = l.dbTLS(c.DB.DSN, l.getenv("POLARDB_DSN") != "" || l.getenv("POLARDB_DSN_FILE") != "") // tls.go

	c.Temporal = Temporal{
		Address:   l.str("TEMPORAL_ADDRESS"),
		Namespace: l.str("TEMPORAL_NAMESPACE"),
		TaskQueue: l.str("SYNCBRIDGE_TASK_QUEUE"),
		APIKey:    l.secret("TEMPORAL_API_KEY", false),
	}
	c.Temporal.TLS = l.temporalTLS(c.Temporal.APIKey != "") // tls.go
	c.Versioning = l.versioning()                           // versioning.go

	c.Pipeline = Pipeline{
		Pollers:              l.intIn("SYNCBRIDGE_POLLERS", 0, 64),
		StartPollers:         l.boolean("SYNCBRIDGE_START_POLLERS"),
		MaxInFlight:          l.intIn("SYNCBRIDGE_MAX_INFLIGHT", 1, 1_000_000),
		BatchSize:            l.intIn("SYNCBRIDGE_BATCH_SIZE", 1, 16),
		HandoverConcurrency:  l.intIn("SYNCBRIDGE_HANDOVER_CONCURRENCY", 1, 256),
		ParkFor:              l.durationIn("SYNCBRIDGE_PARK_FOR", 0, time.Minute),
		CommitBatch:          l.intIn("SYNCBRIDGE_COMMIT_BATCH", 1, 1000),
		BodyBytesInFlight:    l.intIn("SYNCBRIDGE_BODY_BYTES_IN_FLIGHT", 1<<20, 4<<30),
		Flood:                l.boolean("SYNCBRIDGE_FLOOD_MODE"),
		FloodBatches:         l.intIn("SYNCBRIDGE_FLOOD_BATCHES", 1, 64),
		FloodRowsPerSecond:   l.intIn("SYNCBRIDGE_FLOOD_ROWS_PER_SEC", 0, 1_000_000),
		FloodSlowCommit:      l.durationIn("SYNCBRIDGE_FLOOD_SLOW_COMMIT", 10*time.Millisecond, time.Minute),
		FloodNoticeLease:     l.durationIn("SYNCBRIDGE_FLOOD_NOTICE_LEASE", time.Second, 10*time.Minute),
		FloodNoticeKeysBytes: l.intIn("SYNCBRIDGE_FLOOD_NOTICE_KEYS_BYTES", 2048, 65536),
		PollWait:             l.durationIn("SYNCBRIDGE_POLL_WAIT", time.Second, 30*time.Second),
		WorkflowIDPrefix:     l.str("SYNCBRIDGE_WORKFLOW_ID_PREFIX"),
		AckFlushInterval:     l.durationIn("SYNCBRIDGE_ACK_FLUSH", time.Millisecond, 5*time.Second),
		UnclassifiedRetryFor: l.durationIn("SYNCBRIDGE_UNCLASSIFIED_RETRY_FOR", time.Minute, 720*time.Hour),
		// 64 bytes is room for the longest project workflow ID a key must
		// not look like; Temporal's own maximum is far above 1 MiB.
		MaxWorkflowIDBytes: l.intIn("SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES", 64, 1<<20),
		MaxPayloadBytes:    l.intIn("SYNCBRIDGE_MAX_PAYLOAD_BYTES", 64<<10, 64<<20),
		MaxBodyBytes:       l.intIn("SYNCBRIDGE_MAX_BODY_BYTES", 1<<10, 48<<20),
		DeviceTimeMaxAhead: l.durationIn("SYNCBRIDGE_DEVICE_TIME_MAX_AHEAD", 0, 100*365*24*time.Hour),
	}
	if d, err := time.Parse(time.DateOnly, l.str("SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE")); err != nil || d.Year() < 1000 {
		l.fail("SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE", fmt.Sprintf("must be a date YYYY-MM-DD from 1000-01-01, got %q", l.str("SYNCBRIDGE_DEVICE_TIME_NOT_BEFORE")))
	} else {
		c.Pipeline.DeviceTimeNotBefore = d
	}
	if p := c.Pipeline; p.MaxPayloadBytes > 0 && p.MaxBodyBytes > 0 && base64Len(p.MaxBodyBytes)+payloadMargin > p.MaxPayloadBytes {
		// A body the parser accepts must not be one Temporal refuses.
		l.fail("SYNCBRIDGE_MAX_BODY_BYTES", fmt.Sprintf("%d does not fit SYNCBRIDGE_MAX_PAYLOAD_BYTES %d once base64-encoded (%d) with %d bytes of margin; at most %d",
			p.MaxBodyBytes, p.MaxPayloadBytes, base64Len(p.MaxBodyBytes), payloadMargin, (p.MaxPayloadBytes-payloadMargin)/4*3))
	}
	if n := len(c.Pipeline.WorkflowIDPrefix); n >= c.Pipeline.MaxWorkflowIDBytes && c.Pipeline.MaxWorkflowIDBytes > 0 {
		l.fail("SYNCBRIDGE_WORKFLOW_ID_PREFIX", fmt.Sprintf("is %d bytes, leaving no room for keys under SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES %d", n, c.Pipeline.MaxWorkflowIDBytes))
	}
	if contract.IsReservedWorkflowID(c.Pipeline.WorkflowIDPrefix + "k") {
		l.fail("SYNCBRIDGE_WORKFLOW_ID_PREFIX", "makes every record workflow ID look like one of syncbridge's own (poller-, syncbridge-, replay-quarantine-, resolve-conflict-, #replay-)")
	}
	c.Pipeline.PayloadKeys, c.Pipeline.PlaintextPayloads = l.payloadKeys()

	c.MetricsAddr = l.str("SYNCBRIDGE_METRICS_ADDR")
	if c.MetricsAddr == "off" {
		c.MetricsAddr = ""
	}
	c.HealthInterval = l.durationIn("SYNCBRIDGE_HEALTH_INTERVAL", 100*time.Millisecond, 5*time.Minute)
	if err := c.LogLevel.UnmarshalText([]byte(l.str("SYNCBRIDGE_LOG_LEVEL"))); err != nil {
		l.fail("SYNCBRIDGE_LOG_LEVEL", "must be debug, info, warn or error")
	}
	c.LogFormat = l.logFormat()
	c.Codec = l.codecServer() // codecserver.go
	l.transportSafety(c)      // tls.go

	if len(l.problems) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(l.problems, "; "))
	}
	return c, nil
}

// DevLogFormat is SYNCBRIDGE_LOG_FORMAT's default under worker -dev, whose
// log a person reads in a terminal.
const DevLogFormat = logging.Text

// LogFormat reads and checks SYNCBRIDGE_LOG_FORMAT alone, so that a process
// can build its logger before the rest of its configuration loads (worker
// -dev starts its stack first) and a bad value stops it before any line is
// written in the wrong shape. dev selects DevLogFormat as the default.
func LogFormat(getenv func(string) string, dev bool) (logging.Format, error) {
	if dev && strings.TrimSpace(getenv("SYNCBRIDGE_LOG_FORMAT")) == "" {
		return DevLogFormat, nil
	}
	l := loader{getenv: getenv}
	f := l.logFormat()
	if len(l.problems) > 0 {
		return "", fmt.Errorf("invalid configuration: %s", strings.Join(l.problems, "; "))
	}
	return f, nil
}

func (l *loader) logFormat() logging.Format {
	f, err := logging.ParseFormat(l.str("SYNCBRIDGE_LOG_FORMAT"))
	if err != nil {
		l.fail("SYNCBRIDGE_LOG_FORMAT", err.Error())
	}
	return f
}

// payloadMargin is what a delivery adds to its base64 body: the other
// fields (receipt handle, IDs; well under 1 KiB) and the payload envelope
// (activities.PayloadOverhead, 16 KiB).
const payloadMargin = 20 << 10

func base64Len(n int) int { return (n + 2) / 3 * 4 }

// FromEnv loads from the process environment.
func FromEnv() (Config, error) { return Load(os.Getenv) }

// String never shows secrets, so a Config can be logged as a whole.
func (c Config) String() string {
	version := "unversioned"
	if c.Versioning.Enabled {
		version = c.Versioning.DeploymentName + ":" + c.Versioning.BuildID
	}
	return fmt.Sprintf("mq=%s topic=%s group=%s instance=%q tag=%q db=%s temporal=%s/%s queue=%s version=%s pollers=%d maxInFlight=%d encryptPayloads=%t codec=%q",
		c.MQ.Endpoint, c.MQ.Topic, c.MQ.Group, c.MQ.InstanceID, c.MQ.Tag, RedactDSN(c.DB.DSN),
		c.Temporal.Address, c.Temporal.Namespace, c.Temporal.TaskQueue, version,
		c.Pipeline.Pollers, c.Pipeline.MaxInFlight, len(c.Pipeline.PayloadKeys) > 0, c.Codec.Addr)
}

// LogValue makes slog use the redacted form.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// RedactDSN returns user@addr/db with the password removed.
func RedactDSN(dsn string) string {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	return fmt.Sprintf("%s@%s(%s)/%s", mc.User, mc.Net, mc.Addr, mc.DBName)
}

type loader struct {
	getenv   func(string) string
	problems []string
}

func (l *loader) fail(name, msg string) {
	l.problems = append(l.problems, name+" "+msg)
}

func defaultOf(name string) string {
	for _, v := range Vars {
		if v.Name == name {
			return v.Default
		}
	}
	panic("config: undocumented variable " + name)
}

func (l *loader) str(name string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return defaultOf(name)
}

func (l *loader) required(name string) string {
	v := l.str(name)
	if v == "" {
		l.fail(name, "is required")
	}
	return v
}

// secret reads NAME or the file named by NAME_FILE (not both).
func (l *loader) secret(name string, required bool) string {
	direct := l.getenv(name)
	file := strings.TrimSpace(l.getenv(name + "_FILE"))
	switch {
	case direct != "" && file != "":
		l.fail(name, "and "+name+"_FILE are both set; use one")
		return ""
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			l.fail(name+"_FILE", "cannot be read: "+err.Error())
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	case direct != "":
		return direct
	}
	if required {
		l.fail(name, "is required (or "+name+"_FILE)")
	}
	return ""
}

func (l *loader) intIn(name string, lo, hi int) int {
	s := l.str(name)
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		l.fail(name, fmt.Sprintf("must be an integer from %d to %d, got %q", lo, hi, s))
	}
	return n
}

func (l *loader) durationIn(name string, lo, hi time.Duration) time.Duration {
	s := l.str(name)
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		l.fail(name, fmt.Sprintf("must be a duration from %s to %s, got %q", lo, hi, s))
	}
	return d
}

func (l *loader) boolean(name string) bool {
	s := l.str(name)
	b, err := strconv.ParseBool(s)
	if err != nil {
		l.fail(name, fmt.Sprintf("must be true or false, got %q", s))
	}
	return b
}
