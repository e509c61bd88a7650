package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/compose"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFromEnvAndFlags(t *testing.T) {
	env := map[string]string{
		"MQEMU_ACCESS_KEY": "ak", "MQEMU_SECRET_KEY": "sk", "MQEMU_TOPICS": "a, b",
		"MQEMU_INVISIBLE_TIME": "1m", "MQEMU_FAULTS": "dup=0.1", "MQEMU_SEED_MESSAGES": "12",
	}
	s, level, err := parse([]string{"-addr", "0.0.0.0:1234", "-instance", "MQ_INST_x"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.addr != "0.0.0.0:1234" || s.emu.InstanceID != "MQ_INST_x" || strings.Join(s.emu.Topics, "|") != "a|b" ||
		s.emu.InvisibleTime != time.Minute || s.emu.Faults.DuplicateRate != 0.1 || s.seed != 12 || level != slog.LevelInfo {
		t.Fatalf("parsed %+v", s)
	}
	if c := s.emu.Credentials[0]; c.AccessKey != "ak" || c.SecretKey != "sk" {
		t.Fatalf("credentials %+v", c)
	}
}

func TestParseNamesEveryProblem(t *testing.T) {
	env := map[string]string{"MQEMU_FAULTS": "dup=2", "MQEMU_INVISIBLE_TIME": "soon", "MQEMU_SEED_MESSAGES": "-1"}
	_, _, err := parse([]string{"-addr", "nope"}, envOf(env), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"MQEMU_ACCESS_KEY", "MQEMU_SECRET_KEY", "MQEMU_FAULTS", "MQEMU_INVISIBLE_TIME", "MQEMU_SEED_MESSAGES", "MQEMU_ADDR"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestSecretFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sk")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err := parse(nil, envOf(map[string]string{"MQEMU_ACCESS_KEY": "ak", "MQEMU_SECRET_KEY_FILE": f}), io.Discard)
	if err != nil || s.emu.Credentials[0].SecretKey != "from-file" {
		t.Fatalf("%v %+v", err, s.emu.Credentials)
	}
	_, _, err = parse(nil, envOf(map[string]string{"MQEMU_ACCESS_KEY": "ak", "MQEMU_SECRET_KEY_FILE": f, "MQEMU_SECRET_KEY": "x"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both: %v", err)
	}
}

// The compose stack's mqemu service environment is accepted, and every
// variable it sets is one this command reads.
func TestComposeServiceEnvironment(t *testing.T) {
	known := map[string]bool{secretEnv: true, secretEnv + "_FILE": true}
	for _, v := range envNames {
		known[v] = true
	}
	for _, envFile := range []string{"", "../../deploy/env.example"} {
		vars := map[string]string{}
		if envFile != "" {
			var err error
			if vars, err = compose.ReadEnvFile(envFile); err != nil {
				t.Fatal(err)
			}
		}
		f, err := compose.Load("../../docker-compose.yml", compose.Lookup(vars))
		if err != nil {
			t.Fatal(err)
		}
		svc, ok := f.Services["mqemu"]
		if !ok {
			t.Fatal("no mqemu service")
		}
		for k := range svc.Environment {
			if !known[k] {
				t.Errorf("mqemu service sets %s, which mqemu does not read", k)
			}
		}
		s, _, err := parse(nil, envOf(svc.Environment), io.Discard)
		if err != nil {
			t.Fatalf("mqemu service environment rejected: %v", err)
		}
		if s.emu.PersistPath == "" || s.seed == 0 || !strings.HasPrefix(s.addr, "0.0.0.0:") {
			t.Fatalf("unexpected compose settings: %+v", s)
		}
	}
}

// run serves the API, seeds demo messages once, and stops on cancel with
// its state saved; a restart on the same state publishes no second batch.
func TestRunSeedsOnceAndServes(t *testing.T) {
	state := filepath.Join(t.TempDir(), "mq.json")
	s, level, err := parse([]string{"-addr", "127.0.0.1:0", "-seed-messages", "12", "-persist", state, "-instance", "MQ_INST_t"},
		envOf(map[string]string{"MQEMU_ACCESS_KEY": "ak", "MQEMU_SECRET_KEY": "sk"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))

	start := func() (string, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		urls := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- run(ctx, s, log, func(u string) { urls <- u }) }()
		select {
		case u := <-urls:
			return u, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}
		case err := <-done:
			cancel()
			t.Fatalf("run exited: %v", err)
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatal("not ready after 30s")
		}
		return "", nil
	}
	consumeAll := func(url string) int {
		c := mqclient.NewConsumer(mqclient.Endpoint{URL: url, AccessKey: "ak", SecretKey: "sk", InstanceID: "MQ_INST_t"}, "patient-sync", "GID_t", "")
		n := 0
		for {
			msgs, err := c.Consume(context.Background(), 16, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				return n
			}
			var handles []string
			for _, m := range msgs {
				// The demo batch includes malformed messages on purpose;
				// one of them may be the keyless kind.
				if m.Tag != syncevent.Tag || (m.Key != "" && !strings.HasPrefix(m.Key, "demo-")) {
					t.Fatalf("unexpected demo message %s/%s", m.Tag, m.Key)
				}
				handles = append(handles, m.ReceiptHandle)
			}
			if _, err := c.Ack(context.Background(), handles); err != nil {
				t.Fatal(err)
			}
			n += len(msgs)
		}
	}

	url, stop := start()
	first := consumeAll(url)
	stop()
	if first < 10 || first > 12 { // invalid-UTF-8 ones are skipped
		t.Fatalf("consumed %d demo messages, published 12 minus unsendable ones", first)
	}
	url, stop = start()
	defer stop()
	if again := consumeAll(url); again != 0 {
		t.Fatalf("restart on saved state published %d more demo messages", again)
	}
}

func TestAdminHosts(t *testing.T) {
	s, _, err := parse([]string{"-access-key", "ak", "-admin-hosts", "mqemu, emu.local"}, func(k string) string {
		if k == secretEnv {
			return "sk"
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.emu.AdminHosts, ","); got != "mqemu,emu.local" {
		t.Errorf("AdminHosts = %q", got)
	}
}
