package activities

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	sdklog "go.temporal.io/sdk/log"

	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
)

// waitRecorder is a consumer that records the wait of every consume.
type waitRecorder struct {
	mqclient.Consumer
	mu        sync.Mutex
	waits     []time.Duration
	slowFirst time.Duration // how long the next consume takes before it asks
}

func (w *waitRecorder) Consume(ctx context.Context, n int, wait time.Duration) ([]mqclient.Message, error) {
	w.mu.Lock()
	w.waits = append(w.waits, wait)
	slow := w.slowFirst
	w.slowFirst = 0
	w.mu.Unlock()
	time.Sleep(slow)
	return w.Consumer.Consume(ctx, n, wait)
}

// A flood group is topped up by short polls: when the topic runs dry
// after a full batch, the group is settled at once, not after the HTTP
// API's shortest long poll (a second) that finds nothing. Against the
// emulator, through the real SDK.
func TestFloodGroupTopUpIsAShortPoll(t *testing.T) {
	t.Parallel()
	const topic, group, inst, ak, sk = "T", "GID_flood", "MQ_INST_test", "ak", "sk"
	emu, err := mqemu.New(mqemu.Config{InstanceID: inst, Topics: []string{topic},
		Credentials: []mqemu.Credential{{AccessKey: ak, SecretKey: sk}}, InvisibleTime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mqemu.Serve("127.0.0.1:0", emu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = emu.Close() })
	ep := mqclient.Endpoint{URL: srv.URL, AccessKey: ak, SecretKey: sk, InstanceID: inst}
	prod := mqclient.NewProducer(ep, topic)
	ctx := context.Background()
	publish := func(n int) {
		for i := range n {
			if _, err := prod.Publish(ctx, fmt.Sprintf("k%d", i), "", []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec := &waitRecorder{Consumer: mqclient.NewConsumer(ep, topic, group, "")}
	a := &Activities{Consumer: rec, Metrics: metrics.NewPipeline(tally.NoopScope),
		Settings: Settings{BatchSize: 16, PollWait: 5 * time.Second, Flood: Flood{Enabled: true, Linger: 5 * time.Second}}}
	f := a.floodInit()

	// Exactly two full batches: the third consume finds the topic empty.
	publish(32)
	start := time.Now()
	msgs, dones, err := a.gatherFlood(ctx, f, sdklog.NewStructuredLogger(nil))
	took := time.Since(start)
	releaseBodies(dones)
	if err != nil || len(msgs) != 32 {
		t.Fatalf("gathered %d messages, %v; want 32", len(msgs), err)
	}
	if len(rec.waits) != 3 || rec.waits[0] != 5*time.Second || rec.waits[1] != 0 || rec.waits[2] != 0 {
		t.Fatalf("consume waits %v, want a long poll of 5s then two short polls", rec.waits)
	}
	if took > 900*time.Millisecond {
		t.Fatalf("a group of two full batches took %s to gather from a topic that then ran dry", took)
	}

	// The linger bounds the gathering from the first batch on, not from
	// the long poll that waited for it: a first consume that took longer
	// than the linger still gets its group topped up.
	rec.waits = nil
	rec.slowFirst = 400 * time.Millisecond
	a.Settings.Flood.Linger = 300 * time.Millisecond
	publish(48)
	msgs, dones, err = a.gatherFlood(ctx, a.Settings.Flood.withDefaults(), sdklog.NewStructuredLogger(nil))
	releaseBodies(dones)
	if err != nil || len(msgs) != 48 {
		t.Fatalf("gathered %d messages, %v; want 48 (the linger starts with the first batch)", len(msgs), err)
	}
}
