package workerapp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// preflightParts builds what Run hands to preflight, against the test's
// real Temporal server, emulator and database.
func preflightParts(t *testing.T, p *pipe, cfg config.Config) (client.Client, *store.Store, mqclient.Consumer) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.DB.DSN, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	consumer := mqclient.NewConsumer(mqclient.Endpoint{URL: cfg.MQ.Endpoint, AccessKey: cfg.MQ.AccessKey, SecretKey: cfg.MQ.SecretKey, InstanceID: cfg.MQ.InstanceID},
		cfg.MQ.Topic, cfg.MQ.Group, cfg.MQ.Tag)
	return tc, st, consumer
}

func expectProblem(t *testing.T, err error, want string) {
	t.Helper()
	var pe *PreflightError
	if !errors.As(err, &pe) || len(pe.Problems) != 1 || !strings.Contains(pe.Problems[0], want) {
		t.Fatalf("preflight = %v, want exactly one problem mentioning %q", err, want)
	}
}

func TestPreflight(t *testing.T) {
	p := newPipe(t, mqemu.Config{}, nil)
	ctx := context.Background()

	t.Run("ok", func(t *testing.T) {
		cfg := p.config()
		tc, st, consumer := preflightParts(t, p, cfg)
		published := p.publish(generate(syncevent.GenOptions{Count: 3, Seed: 1, KeyPrefix: "pre-"}))
		if err := preflight(ctx, cfg, tc, st, consumer); err != nil {
			t.Fatalf("preflight on a sound setup: %v", err)
		}
		// The broker probe consumed nothing: all messages still ready.
		if st := p.env.MQ.Stats(p.env.Topic, p.env.Group); st.Ready != len(published) || st.InFlight != 0 {
			t.Errorf("preflight touched messages: %+v", st)
		}
	})

	t.Run("namespace missing", func(t *testing.T) {
		cfg := p.config()
		cfg.Temporal.Namespace = "no-such-namespace-" + p.env.DBName
		tc, st, consumer := preflightParts(t, p, cfg)
		expectProblem(t, preflight(ctx, cfg, tc, st, consumer), "does not exist")
	})

	t.Run("search attribute missing", func(t *testing.T) {
		cfg := p.config()
		cfg.Temporal.Namespace = "bare-" + p.env.DBName
		if _, err := p.env.Client.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        cfg.Temporal.Namespace,
			WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
		tc, st, consumer := preflightParts(t, p, cfg)
		// A new namespace reaches the server's caches within seconds.
		var err error
		deadline := time.Now().Add(45 * time.Second)
		for {
			err = preflight(ctx, cfg, tc, st, consumer)
			if err != nil && strings.Contains(err.Error(), "SyncOutcome") || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		expectProblem(t, err, "lacks search attribute SyncKeys (KeywordList), SyncOutcome (Keyword)")
	})

	t.Run("bad credentials", func(t *testing.T) {
		cfg := p.config()
		cfg.MQ.SecretKey = "wrong-secret"
		tc, st, consumer := preflightParts(t, p, cfg)
		err := preflight(ctx, cfg, tc, st, consumer)
		expectProblem(t, err, "refused the credentials")
		if strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("message shows the secret: %v", err)
		}
	})

	t.Run("unknown topic", func(t *testing.T) {
		cfg := p.config()
		cfg.MQ.Topic = "no-such-topic"
		tc, st, consumer := preflightParts(t, p, cfg)
		expectProblem(t, preflight(ctx, cfg, tc, st, consumer), `no topic "no-such-topic"`)
	})

	t.Run("table dropped", func(t *testing.T) {
		cfg := p.config()
		tc, st, consumer := preflightParts(t, p, cfg)
		if _, err := st.DB.ExecContext(ctx, "DROP TABLE sync_quarantine"); err != nil {
			t.Fatal(err)
		}
		expectProblem(t, preflight(ctx, cfg, tc, st, consumer), "sync_quarantine")
	})
}

// Run refuses to start, with the preflight's message, before it polls.
func TestRunRefusesBadCredentials(t *testing.T) {
	p := newPipe(t, mqemu.Config{}, map[string]string{"ALIBABA_SECRET_KEY": "wrong-secret"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Run(ctx, p.config(), Options{Logger: p.env.Logger})
	var pe *PreflightError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("Run = %v, want a preflight refusal naming the credentials", err)
	}
}
