// Command mqemu serves the RocketMQ HTTP emulator (internal/mqemu) on its
// own, as the local stand-in for Alibaba Cloud RocketMQ in the reference
// docker-compose stack. It is a test and demo tool: the broker's
// authentication is emulated, but nothing here is hardened for the
// internet.
//
// Settings come from flags, each defaulting to an environment variable
// (so a container sets env and a terminal sets flags). The secret key is
// read from the environment only (MQEMU_SECRET_KEY or
// MQEMU_SECRET_KEY_FILE): a flag would show in the process list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// settings is the parsed command line and environment.
type settings struct {
	addr string
	emu  mqemu.Config
	seed int // demo messages published at start into topics[0]
}

// envNames documents every variable, as flag name -> variable.
var envNames = map[string]string{
	"addr":               "MQEMU_ADDR",
	"access-key":         "MQEMU_ACCESS_KEY",
	"instance":           "MQEMU_INSTANCE_ID",
	"topics":             "MQEMU_TOPICS",
	"auto-create-topics": "MQEMU_AUTO_CREATE_TOPICS",
	"invisible":          "MQEMU_INVISIBLE_TIME",
	"max-deliveries":     "MQEMU_MAX_DELIVERIES",
	"persist":            "MQEMU_PERSIST_PATH",
	"faults":             mqemu.FaultsEnv,
	"seed-messages":      "MQEMU_SEED_MESSAGES",
	"log-level":          "MQEMU_LOG_LEVEL",
	"admin-hosts":        "MQEMU_ADMIN_HOSTS",
}

// secretEnv is the only way to give the secret key.
const secretEnv = "MQEMU_SECRET_KEY"

func parse(args []string, getenv func(string) string, stderr io.Writer) (settings, slog.Level, error) {
	fs := flag.NewFlagSet("mqemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(flagName, def string) string {
		if v := strings.TrimSpace(getenv(envNames[flagName])); v != "" {
			return v
		}
		return def
	}
	usage := func(flagName, text string) string { return text + " (env " + envNames[flagName] + ")" }

	addr := fs.String("addr", env("addr", "127.0.0.1:9876"), usage("addr", "listen address; 0.0.0.0:9876 in a container"))
	accessKey := fs.String("access-key", env("access-key", ""), usage("access-key", "accepted AccessKey ID (required); its secret comes from "+secretEnv+" or "+secretEnv+"_FILE"))
	instance := fs.String("instance", env("instance", ""), usage("instance", "instance ID requests must name; empty accepts any"))
	topics := fs.String("topics", env("topics", "patient-sync"), usage("topics", "comma-separated topics that exist"))
	autoCreate := fs.String("auto-create-topics", env("auto-create-topics", "false"), usage("auto-create-topics", "create unknown topics on first use instead of TopicNotExist"))
	invisible := fs.String("invisible", env("invisible", "5m"), usage("invisible", "invisibility time before an unacked message is redelivered (the cloud's is 5m)"))
	maxDeliveries := fs.String("max-deliveries", env("max-deliveries", "16"), usage("max-deliveries", "deliveries before a message is dead-lettered"))
	persist := fs.String("persist", env("persist", ""), usage("persist", "JSON state file kept across restarts; empty = memory only"))
	faults := fs.String("faults", env("faults", ""), usage("faults", `fault injection, e.g. "dup=0.1,expire=0.05,error=0.01,latency=20ms"`))
	seed := fs.String("seed-messages", env("seed-messages", "0"), usage("seed-messages", "demo sync events to publish into the first topic at start, unless it already holds messages"))
	logLevel := fs.String("log-level", env("log-level", "info"), usage("log-level", "debug, info, warn or error"))
	adminHosts := fs.String("admin-hosts", env("admin-hosts", ""), usage("admin-hosts", "comma-separated host names, besides loopback ones, that /_emulator/ answers to (e.g. mqemu in a compose network)"))
	if err := fs.Parse(args); err != nil {
		return settings{}, 0, err
	}
	if fs.NArg() > 0 {
		return settings{}, 0, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var problems []string
	fail := func(flagName, msg string) {
		problems = append(problems, fmt.Sprintf("-%s (%s) %s", flagName, envNames[flagName], msg))
	}
	s := settings{addr: *addr}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		fail("addr", "must be host:port")
	}
	secret, err := readSecret(getenv)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if *accessKey == "" {
		fail("access-key", "is required")
	}
	s.emu.Credentials = []mqemu.Credential{{AccessKey: *accessKey, SecretKey: secret}}
	s.emu.InstanceID = *instance
	for t := range strings.SplitSeq(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			s.emu.Topics = append(s.emu.Topics, t)
		}
	}
	if s.emu.AutoCreateTopics, err = strconv.ParseBool(*autoCreate); err != nil {
		fail("auto-create-topics", fmt.Sprintf("must be true or false, got %q", *autoCreate))
	}
	if s.emu.InvisibleTime, err = time.ParseDuration(*invisible); err != nil || s.emu.InvisibleTime < time.Second {
		fail("invisible", fmt.Sprintf("must be a duration of at least 1s, got %q", *invisible))
	}
	if s.emu.MaxDeliveries, err = strconv.Atoi(*maxDeliveries); err != nil || s.emu.MaxDeliveries < 1 {
		fail("max-deliveries", fmt.Sprintf("must be a positive integer, got %q", *maxDeliveries))
	}
	s.emu.PersistPath = *persist
	for h := range strings.SplitSeq(*adminHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			s.emu.AdminHosts = append(s.emu.AdminHosts, h)
		}
	}
	if s.emu.Faults, err = mqemu.ParseFaults(*faults); err != nil {
		fail("faults", err.Error())
	}
	if s.seed, err = strconv.Atoi(*seed); err != nil || s.seed < 0 || s.seed > 100_000 {
		fail("seed-messages", fmt.Sprintf("must be an integer from 0 to 100000, got %q", *seed))
	}
	if s.seed > 0 && len(s.emu.Topics) == 0 {
		fail("seed-messages", "needs at least one topic in -topics")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("log-level", "must be debug, info, warn or error")
	}
	if len(problems) > 0 {
		return settings{}, 0, fmt.Errorf("invalid settings: %s", strings.Join(problems, "; "))
	}
	return s, level, nil
}

// readSecret reads MQEMU_SECRET_KEY or the file MQEMU_SECRET_KEY_FILE
// names, the same convention as the worker's secrets.
func readSecret(getenv func(string) string) (string, error) {
	direct, file := getenv(secretEnv), strings.TrimSpace(getenv(secretEnv+"_FILE"))
	switch {
	case direct != "" && file != "":
		return "", fmt.Errorf("%s and %s_FILE are both set; use one", secretEnv, secretEnv)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_FILE cannot be read: %w", secretEnv, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case direct != "":
		return direct, nil
	}
	return "", fmt.Errorf("%s (or %s_FILE) is required", secretEnv, secretEnv)
}

// run serves until ctx ends. ready, if set, gets the server's URL once it
// listens and the demo messages are published.
func run(ctx context.Context, s settings, log *slog.Logger, ready func(url string)) error {
	s.emu.Logger = log
	emu, err := mqemu.New(s.emu)
	if err != nil {
		return err
	}
	srv, err := mqemu.Serve(s.addr, emu)
	if err != nil {
		_ = emu.Close()
		return err
	}
	closeAll := func() error {
		// Server first: it answers pending long polls; then the emulator
		// writes its state file.
		return errors.Join(srv.Close(), emu.Close())
	}
	if s.seed > 0 {
		_, port, _ := net.SplitHostPort(srv.Addr)
		n, err := seedDemo(ctx, emu, "http://"+net.JoinHostPort("127.0.0.1", port), s)
		if err != nil {
			return errors.Join(fmt.Errorf("publish demo messages: %w", err), closeAll())
		}
		log.Info("mqemu: demo messages", "topic", s.emu.Topics[0], "published", n)
	}
	if ready != nil {
		ready(srv.URL)
	}
	<-ctx.Done()
	log.Info("mqemu: stopping")
	return closeAll()
}

// seedDemo publishes realistic sync events through the real SDK, as an
// edge gateway would: some republished (a few changed), some malformed.
// A topic that already holds messages (a persisted state) is left alone,
// so restarting the container does not pile up demo batches.
func seedDemo(ctx context.Context, emu *mqemu.Emulator, url string, s settings) (int, error) {
	topic := s.emu.Topics[0]
	for _, ts := range emu.Topics() {
		if ts.Topic == topic && ts.Published > 0 {
			return 0, nil
		}
	}
	p := mqclient.NewProducer(mqclient.Endpoint{
		URL: url, AccessKey: s.emu.Credentials[0].AccessKey, SecretKey: s.emu.Credentials[0].SecretKey, InstanceID: s.emu.InstanceID,
	}, topic)
	msgs := syncevent.Generate(syncevent.GenOptions{
		Count: s.seed, DistinctKeys: s.seed * 3 / 4, ChangedRate: 0.3, BadRate: 1.0 / 12,
		Seed: time.Now().UnixNano(), KeyPrefix: "demo-",
	})
	n := 0
	for _, m := range msgs {
		// Invalid UTF-8 cannot cross the HTTP API (the SDK rewrites it).
		if m.Kind == syncevent.KindBadPrefix+syncevent.ReasonInvalidUTF8 {
			continue
		}
		if _, err := p.Publish(ctx, m.Key, m.Tag, m.Body); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func main() {
	s, level, err := parse(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqemu:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s, log, nil); err != nil {
		fmt.Fprintln(os.Stderr, "mqemu:", err)
		os.Exit(1)
	}
}
