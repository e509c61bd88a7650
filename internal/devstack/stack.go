package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// Dev defaults for the emulated RocketMQ instance. They are not secrets: the
// emulator only listens on loopback and exists for this process.
const (
	DefaultMQAddr     = "127.0.0.1:9876"
	DefaultTopic      = "patient-sync"
	DefaultGroup      = "GID_syncbridge"
	DefaultTag        = "SyncEvent"
	DefaultInstanceID = "MQ_INST_dev"
	DefaultAccessKey  = "dev-access-key"
	DefaultSecretKey  = "dev-secret-key-loopback-only"
)

// Options configures Start. Zero values give the documented defaults.
type Options struct {
	// Temporal configures the server. A nil SearchAttributes means the
	// pipeline's own (searchattr.All); a nil Logger means Logger below.
	Temporal TemporalOptions
	// MQAddr is the emulator's listen address. Default DefaultMQAddr
	// ("127.0.0.1:9876"); port 0 picks a free port.
	MQAddr string
	// MQ configures the emulator. Start adds the AccessKey/SecretKey
	// credential, sets InstanceID, makes sure Topic exists and, when nil,
	// sets its Logger.
	MQ mqemu.Config
	// Topic, Group, Tag, InstanceID, AccessKey and SecretKey describe the dev
	// instance a worker should consume. Defaults: DefaultTopic, DefaultGroup,
	// DefaultTag, MQ.InstanceID or else DefaultInstanceID, DefaultAccessKey,
	// DefaultSecretKey.
	Topic, Group, Tag, InstanceID, AccessKey, SecretKey string
	// DSN is an external MySQL/PolarDB go-sql-driver DSN. "" starts an
	// EmbeddedDB at DBAddr instead.
	DSN string
	// DBAddr is the embedded database's address. Default DefaultDBAddr
	// ("127.0.0.1:3307"); port 0 picks a free port. Ignored with DSN.
	DBAddr string
	// Logger receives the stack's logs. nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.MQAddr, DefaultMQAddr)
	def(&o.Topic, DefaultTopic)
	def(&o.Group, DefaultGroup)
	def(&o.Tag, DefaultTag)
	def(&o.InstanceID, o.MQ.InstanceID)
	def(&o.InstanceID, DefaultInstanceID)
	def(&o.AccessKey, DefaultAccessKey)
	def(&o.SecretKey, DefaultSecretKey)
	def(&o.DBAddr, DefaultDBAddr)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Temporal.SearchAttributes == nil {
		o.Temporal.SearchAttributes = searchattr.All()
	}
	if o.Temporal.Logger == nil {
		o.Temporal.Logger = o.Logger
	}

	mq := o.MQ
	mq.InstanceID = o.InstanceID
	if !slices.ContainsFunc(mq.Credentials, func(c mqemu.Credential) bool { return c.AccessKey == o.AccessKey }) {
		mq.Credentials = append(slices.Clone(mq.Credentials), mqemu.Credential{AccessKey: o.AccessKey, SecretKey: o.SecretKey})
	}
	if !slices.Contains(mq.Topics, o.Topic) {
		mq.Topics = append(slices.Clone(mq.Topics), o.Topic)
	}
	if mq.Logger == nil {
		mq.Logger = o.Logger.With("component", "mqemu")
	}
	o.MQ = mq
	return o
}

// Stack is everything the pipeline talks to, running in this process.
type Stack struct {
	Temporal *Temporal
	MQ       *mqemu.Emulator
	MQServer *mqemu.Server
	DB       *EmbeddedDB // nil when an external DSN is used
	DSN      string

	Topic, Group, Tag, InstanceID, AccessKey, SecretKey string

	// Payloads describes payload encryption for the banner; set by the
	// caller that configures the worker (worker -dev).
	Payloads PayloadInfo

	closeOnce sync.Once
	closeErr  error
}

// Start brings up the database (unless o.DSN is set), Temporal with its UI,
// and the RocketMQ emulator, in that order. On error everything already
// started is stopped again. ctx bounds the start only.
func Start(ctx context.Context, o Options) (*Stack, error) {
	o = o.withDefaults()
	s := &Stack{
		Topic: o.Topic, Group: o.Group, Tag: o.Tag, InstanceID: o.InstanceID,
		AccessKey: o.AccessKey, SecretKey: o.SecretKey,
	}
	fail := func(err error) (*Stack, error) {
		if cerr := s.Close(); cerr != nil {
			o.Logger.Error("dev stack: cleanup after failed start", "err", cerr)
		}
		return nil, err
	}

	if o.DSN != "" {
		if _, err := mysql.ParseDSN(o.DSN); err != nil {
			// The DSN may hold a password: say what is wrong, not what it is.
			return nil, errors.New("devstack: the database DSN is not a valid go-sql-driver DSN (value not shown)")
		}
		s.DSN = o.DSN
	} else {
		db, err := StartEmbeddedDB(o.DBAddr, DefaultDatabase, o.Logger.With("component", "embeddeddb"))
		if err != nil {
			return fail(err)
		}
		s.DB, s.DSN = db, db.DSN()
	}

	t, err := StartTemporal(ctx, o.Temporal)
	if err != nil {
		return fail(err)
	}
	s.Temporal = t

	emu, err := mqemu.New(o.MQ)
	if err != nil {
		return fail(fmt.Errorf("devstack: mq emulator: %w", err))
	}
	s.MQ = emu
	srv, err := mqemu.Serve(o.MQAddr, emu)
	if err != nil {
		return fail(fmt.Errorf("devstack: mq emulator address %s is not available (is another dev stack running? pick another port): %w",
			o.MQAddr, err))
	}
	s.MQServer = srv
	return s, nil
}

// PayloadInfo is what the banner says about payload encryption.
type PayloadInfo struct {
	// KeyNote says where the key lives ("" = payloads are plaintext).
	KeyNote string
	// CodecURL is the codec endpoint ("" = none).
	CodecURL string
	// UIDecodes is true when the Web UI is configured to use CodecURL.
	UIDecodes bool
	// Env are extra exports a second terminal needs (the key, the codec
	// token), printed after Env's.
	Env [][2]string
}

// Close stops the parts in reverse start order and reports every failure.
// It is idempotent and safe to call from a signal handler and a defer at
// once: the second caller waits and gets the same result.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.MQServer != nil {
			errs = append(errs, s.MQServer.Close())
		}
		if s.MQ != nil {
			errs = append(errs, s.MQ.Close())
		}
		if s.Temporal != nil {
			errs = append(errs, s.Temporal.Stop())
		}
		if s.DB != nil {
			errs = append(errs, s.DB.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Env is what a worker in another terminal needs, as ordered NAME, value
// pairs. It includes the emulator's secret, which is a loopback-only dev
// value, and the DSN, which may hold a password when it is external.
func (s *Stack) Env() [][2]string {
	return [][2]string{
		{"ROCKETMQ_ENDPOINT", s.MQServer.URL},
		{"ALIBABA_ACCESS_KEY", s.AccessKey},
		{"ALIBABA_SECRET_KEY", s.SecretKey},
		{"ROCKETMQ_INSTANCE_ID", s.InstanceID},
		{"ROCKETMQ_TOPIC", s.Topic},
		{"ROCKETMQ_GROUP_ID", s.Group},
		{"ROCKETMQ_TAG", s.Tag},
		{"TEMPORAL_ADDRESS", s.Temporal.Address()},
		{"TEMPORAL_NAMESPACE", s.Temporal.Namespace()},
		{"POLARDB_DSN", s.DSN},
	}
}

// Banner is the block printed once the stack is up: every endpoint, then the
// exports for a second terminal. metricsURL is the worker's metrics endpoint;
// "" leaves the line out. An external DSN's password is masked here (the
// user has it already); everything else is printed as Env returns it.
func (s *Stack) Banner(metricsURL string) string {
	var b strings.Builder
	line := func(name, value string) { fmt.Fprintf(&b, "  %-19s %s\n", name, value) }
	b.WriteString("syncbridge dev stack is up\n")
	line("Temporal frontend", fmt.Sprintf("%s (namespace %s)", s.Temporal.Address(), s.Temporal.Namespace()))
	if u := s.Temporal.UIURL(); u != "" {
		line("Temporal Web UI", u)
	}
	line("Temporal state", dbDescription(s.Temporal.DBPath()))
	line("RocketMQ emulator", fmt.Sprintf("%s (instance %s, topic %s, group %s, tag %s)",
		s.MQServer.URL, s.InstanceID, s.Topic, s.Group, s.Tag))
	line("Emulator stats", s.MQServer.StatsURL())
	if metricsURL != "" {
		line("Metrics", metricsURL)
	}
	switch p := s.Payloads; {
	case p.KeyNote == "":
		line("Payloads", "PLAINTEXT: patient data is readable by anyone who can read Temporal history")
	default:
		line("Payloads", "encrypted (AES-256-GCM) with "+p.KeyNote+"; the server stores ciphertext")
		if p.CodecURL != "" {
			ui := "the Web UI does not use it: it shows ciphertext"
			if p.UIDecodes {
				ui = "the Web UI decodes through it"
			}
			line("Codec server", p.CodecURL+" ("+ui+"; CLI: temporal workflow show --codec-endpoint "+p.CodecURL+` --codec-auth "Bearer $SYNCBRIDGE_CODEC_TOKEN")`)
		}
	}
	if s.DB != nil {
		line("Database", s.DSN+" (embedded, in memory: lost on exit)")
	} else {
		line("Database", maskDSN(s.DSN)+" (external)")
	}
	b.WriteString("\nFor a second terminal:\n")
	env := s.Env()
	for i, kv := range env {
		if kv[0] == "POLARDB_DSN" && s.DB == nil {
			env[i][1] = maskDSN(kv[1])
		}
	}
	b.WriteString(ExportBlock(append(env, s.Payloads.Env...)))
	b.WriteString("\nCtrl-C stops everything.\n")
	return b.String()
}

// ExportBlock is the "export NAME=value" lines a second terminal pastes,
// values quoted for POSIX shells. The production rehearsal prints its
// environment the same way.
func ExportBlock(pairs [][2]string) string {
	var b strings.Builder
	for _, kv := range pairs {
		fmt.Fprintf(&b, "  export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return b.String()
}

// maskDSN hides the password of a DSN; an unparsable one is hidden whole.
func maskDSN(dsn string) string {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(DSN not shown)"
	}
	if c.Passwd != "" {
		c.Passwd = "****"
	}
	return c.FormatDSN()
}

// shellQuote makes v one word for POSIX shells; DSNs carry ( ) ? & which the
// shell would otherwise interpret.
func shellQuote(v string) string {
	if v != "" && strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@") == "" {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
