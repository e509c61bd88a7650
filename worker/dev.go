//go:build !nodev

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/devstack"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// devFlags configure `worker -dev`. Every address is fixed by default so a
// second terminal can rely on it, and overridable when a port is taken.
type devFlags struct {
	enabled      bool
	db           string
	seed         int
	seedRNG      int64
	faults       string
	invisible    time.Duration
	temporalAddr string
	uiAddr       string
	mqAddr       string
	mysqlAddr    string
	codecAddr    string
	uiCodec      bool
}

func (d *devFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.db, "dev-db", "", "SQLite file for the embedded Temporal server (and PATH.mq.json for the emulator's backlog); empty = in memory")
	fs.IntVar(&d.seed, "dev-seed", 24, "demo sync events to publish at start (some republished, some malformed); 0 = none")
	fs.Int64Var(&d.seedRNG, "dev-seed-rng", 0, "random seed for the demo batch; 0 = a new batch each start")
	fs.StringVar(&d.faults, "mq-faults", "", `emulator fault injection, e.g. "dup=0.1,expire=0.05,error=0.01,latency=20ms"`)
	fs.DurationVar(&d.invisible, "mq-invisible", time.Minute, "emulator invisibility time before an unacked message is redelivered (the cloud uses 5m)")
	fs.StringVar(&d.temporalAddr, "dev-temporal-addr", "127.0.0.1:7233", "embedded Temporal frontend (gRPC) address")
	fs.StringVar(&d.uiAddr, "dev-ui-addr", "127.0.0.1:8233", "Temporal Web UI address")
	fs.StringVar(&d.mqAddr, "dev-mq-addr", "127.0.0.1:9876", "RocketMQ HTTP emulator address")
	fs.StringVar(&d.codecAddr, "dev-codec-addr", "127.0.0.1:8234", "codec server address (the Web UI and temporal CLI decode encrypted payloads through it)")
	fs.BoolVar(&d.uiCodec, "dev-ui-codec", true, "configure the Web UI to decode payloads through the codec server; false shows what the server stores (ciphertext)")
	fs.StringVar(&d.mysqlAddr, "dev-mysql-addr", "127.0.0.1:3307", "embedded MySQL-compatible database address (used when POLARDB_* is not set)")
}

// runDev starts the local stack and runs the normal worker against it:
// only the endpoints differ from production.
func runDev(ctx context.Context, d devFlags, log *slog.Logger, level *slog.LevelVar) error {
	opts, err := stackOptions(d, log)
	if err != nil {
		return err
	}
	// Encrypted as in production, with a dev key; the codec server lets
	// the Web UI show the decoded payloads.
	secrets, err := loadDevSecrets(d.db)
	if err != nil {
		return err
	}
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start dev stack: %w", err)
	}
	defer closeStack(stack, log)
	stack.Payloads = payloadInfo(d, secrets)

	cfg, err := devConfig(d, stack, secrets)
	if err != nil {
		return err
	}
	level.Set(cfg.LogLevel)
	limitEmbeddedPool(&cfg, stack, log)
	if err := publishDemoBatch(ctx, d, stack, log); err != nil {
		return err
	}
	return workerapp.Run(ctx, cfg, workerapp.Options{Logger: log, Ready: printBanner(stack)})
}

// stackOptions are the embedded Temporal server, Web UI, emulator and
// database the flags ask for, every one logging through log.
func stackOptions(d devFlags, log *slog.Logger) (devstack.Options, error) {
	faults, err := mqemu.ParseFaults(d.faults)
	if err != nil {
		return devstack.Options{}, fmt.Errorf("-mq-faults: %w", err)
	}
	mqState := ""
	if d.db != "" {
		mqState = d.db + ".mq.json"
	}
	externalDSN, err := externalDatabase()
	if err != nil {
		return devstack.Options{}, err
	}
	uiCodec := ""
	if d.uiCodec {
		uiCodec = codecURL(d)
	}
	return devstack.Options{
		Temporal: devstack.TemporalOptions{
			FrontendAddr:     d.temporalAddr,
			UIAddr:           d.uiAddr,
			UICodecEndpoint:  uiCodec,
			DBPath:           d.db,
			Namespace:        "default",
			SearchAttributes: searchattr.All(),
			Logger:           log,
		},
		MQAddr: d.mqAddr,
		MQ: mqemu.Config{
			InvisibleTime: d.invisible,
			PersistPath:   mqState,
			Faults:        faults,
			Seed:          1,
			Logger:        log,
		},
		DSN:    externalDSN,
		DBAddr: d.mysqlAddr,
		Logger: log,
	}, nil
}

func codecURL(d devFlags) string { return "http://" + d.codecAddr }

// externalDatabase is the DSN of a database given in the environment
// (POLARDB_*), which wins over the embedded one; "" when none is.
func externalDatabase() (string, error) {
	if os.Getenv("POLARDB_DSN") == "" && os.Getenv("POLARDB_DSN_FILE") == "" && os.Getenv("POLARDB_ENDPOINT") == "" {
		return "", nil
	}
	dbOnly, err := config.Load(func(k string) string {
		switch k {
		case "ROCKETMQ_ENDPOINT":
			return "http://127.0.0.1"
		case "ALIBABA_ACCESS_KEY", "ALIBABA_SECRET_KEY", "ROCKETMQ_TOPIC", "ROCKETMQ_GROUP_ID":
			return "placeholder"
		case "SYNCBRIDGE_PAYLOAD_PLAINTEXT":
			return "true"
		case "SYNCBRIDGE_PAYLOAD_KEY", "SYNCBRIDGE_PAYLOAD_KEY_FILE", "SYNCBRIDGE_PAYLOAD_KEY_ID", "SYNCBRIDGE_PAYLOAD_OLD_KEYS", "SYNCBRIDGE_PAYLOAD_OLD_KEYS_FILE",
			"SYNCBRIDGE_CODEC_ADDR", "SYNCBRIDGE_CODEC_TOKEN", "SYNCBRIDGE_CODEC_TOKEN_FILE", "SYNCBRIDGE_CODEC_AUTH", "SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED",
			"SYNCBRIDGE_CODEC_OIDC_ISSUER", "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "SYNCBRIDGE_CODEC_OIDC_GROUPS":
			return "" // only the database settings matter here
		}
		return os.Getenv(k)
	})
	if err != nil {
		return "", err
	}
	return dbOnly.DB.DSN, nil
}

func closeStack(stack *devstack.Stack, log *slog.Logger) {
	if err := stack.Close(); err != nil {
		log.Warn("dev stack shutdown", "error", err)
	}
}

// payloadInfo is what the banner says about payload encryption, and the
// variables it exports for a second terminal.
func payloadInfo(d devFlags, secrets devSecrets) devstack.PayloadInfo {
	info := devstack.PayloadInfo{
		KeyNote:   "a generated dev key (in memory: lost on exit)",
		CodecURL:  codecURL(d),
		UIDecodes: d.uiCodec,
		Env: [][2]string{
			{"SYNCBRIDGE_PAYLOAD_KEY", secrets.key},
			{"SYNCBRIDGE_PAYLOAD_KEY_ID", "dev"},
			{"SYNCBRIDGE_CODEC_TOKEN", secrets.token},
		},
	}
	if secrets.keyFile != "" {
		info.KeyNote = "the dev key in " + secrets.keyFile
		info.Env = [][2]string{
			{"SYNCBRIDGE_PAYLOAD_KEY_FILE", secrets.keyFile},
			{"SYNCBRIDGE_PAYLOAD_KEY_ID", "dev"},
			{"SYNCBRIDGE_CODEC_TOKEN_FILE", secrets.tokenFile},
		}
	}
	return info
}

// devConfig is the worker's configuration against the stack: its
// endpoints, the dev key and codec settings win over the shell's, the rest
// comes from the environment as in production.
func devConfig(d devFlags, stack *devstack.Stack, secrets devSecrets) (config.Config, error) {
	env := map[string]string{}
	for _, kv := range stack.Env() {
		env[kv[0]] = kv[1]
	}
	// A shorter long poll than production's 30 s: a stopping worker lets
	// the poll in progress finish, and Ctrl-C should feel immediate.
	env["SYNCBRIDGE_POLL_WAIT"] = "5s"
	env["SYNCBRIDGE_PAYLOAD_KEY"] = secrets.key
	env["SYNCBRIDGE_PAYLOAD_KEY_ID"] = "dev"
	env["SYNCBRIDGE_CODEC_ADDR"] = d.codecAddr
	env["SYNCBRIDGE_CODEC_TOKEN"] = secrets.token
	env["SYNCBRIDGE_CODEC_AUTH"] = "ui-origin"
	if u := stack.Temporal.UIURL(); u != "" {
		env["SYNCBRIDGE_CODEC_UI_ORIGIN"] = u
	} else {
		env["SYNCBRIDGE_CODEC_AUTH"] = "token"
	}
	// The dev codec trusts the UI's origin, which the codec server accepts
	// only on a loopback -dev-codec-addr (it refuses to start otherwise).
	for _, k := range []string{"SYNCBRIDGE_PAYLOAD_KEY_FILE", "SYNCBRIDGE_PAYLOAD_OLD_KEYS", "SYNCBRIDGE_PAYLOAD_OLD_KEYS_FILE", "SYNCBRIDGE_PAYLOAD_PLAINTEXT", "SYNCBRIDGE_CODEC_TOKEN_FILE",
		"SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED", "SYNCBRIDGE_CODEC_OIDC_ISSUER", "SYNCBRIDGE_CODEC_OIDC_JWKS_URL", "SYNCBRIDGE_CODEC_OIDC_AUDIENCE", "SYNCBRIDGE_CODEC_OIDC_GROUPS"} {
		env[k] = "" // the dev key and token win over a production setting in the shell
	}
	if os.Getenv("SYNCBRIDGE_LOG_FORMAT") == "" {
		env["SYNCBRIDGE_LOG_FORMAT"] = string(config.DevLogFormat) // what main's logger writes
	}
	return config.Load(func(k string) string {
		if v := os.Getenv(k); v != "" && k == "SYNCBRIDGE_POLL_WAIT" {
			return v
		}
		if v, ok := env[k]; ok {
			return v // "" included: the dev stack's choice wins
		}
		return os.Getenv(k)
	})
}

// limitEmbeddedPool gives the embedded engine one connection: its
// in-memory tables lose writes made by concurrent transactions (seen here:
// rows reported inserted and then missing), and one connection serialises
// them. A real database given by POLARDB_* keeps the configured pool.
func limitEmbeddedPool(cfg *config.Config, stack *devstack.Stack, log *slog.Logger) {
	if stack.DB != nil && cfg.DB.MaxOpenConns > 1 {
		log.Info("embedded database: pool limited to one connection", "configured", cfg.DB.MaxOpenConns)
		cfg.DB.MaxOpenConns = 1
	}
}

// publishDemoBatch publishes -dev-seed demo events, reproducibly with
// -dev-seed-rng.
func publishDemoBatch(ctx context.Context, d devFlags, stack *devstack.Stack, log *slog.Logger) error {
	if d.seed <= 0 {
		return nil
	}
	rng := d.seedRNG
	if rng == 0 {
		rng = time.Now().UnixNano()
	}
	if err := publishDemo(ctx, stack, demoBatch(d.seed, rng)); err != nil {
		return err
	}
	log.Info("published demo batch", "messages", d.seed, "seed", rng)
	return nil
}

// printBanner prints the stack's addresses and exports on stdout once the
// worker polls; the log stays on stderr.
func printBanner(stack *devstack.Stack) func(metricsAddr string) {
	return func(metricsAddr string) {
		metricsURL := ""
		if metricsAddr != "" {
			metricsURL = "http://" + metricsAddr + "/metrics"
		}
		fmt.Fprintln(os.Stdout, stack.Banner(metricsURL))
	}
}

// demoBatch is n realistic sync events: a quarter republished (some with
// a changed payload), about one in twelve malformed.
func demoBatch(n int, seed int64) []syncevent.OutMessage {
	return syncevent.Generate(syncevent.GenOptions{
		Count:        n,
		DistinctKeys: n * 3 / 4,
		ChangedRate:  0.3,
		BadRate:      1.0 / 12,
		Seed:         seed,
		KeyPrefix:    "rec-",
	})
}

// publishDemo sends the batch through the emulator with the real SDK, as
// an edge gateway would.
func publishDemo(ctx context.Context, s *devstack.Stack, msgs []syncevent.OutMessage) error {
	p := mqclient.NewProducer(mqclient.Endpoint{
		URL: s.MQServer.URL, AccessKey: s.AccessKey, SecretKey: s.SecretKey, InstanceID: s.InstanceID,
	}, s.Topic)
	for _, m := range msgs {
		if _, err := p.Publish(ctx, m.Key, m.Tag, m.Body); err != nil {
			return fmt.Errorf("publish demo message: %w", err)
		}
	}
	return nil
}
