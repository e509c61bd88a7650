package activities

import (
	"context"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/syncbridge/syncbridge/internal/bytebudget"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/mqclient"
)

type bodyConsumer struct{ body []byte }

func (c bodyConsumer) Consume(context.Context, int, time.Duration) ([]mqclient.Message, error) {
	return []mqclient.Message{{MessageID: "m", Key: "k", Body: c.body}}, nil
}

func (bodyConsumer) Ack(context.Context, []string) ([]mqclient.HandleError, error) { return nil, nil }

// A poller reserves room for a full batch of the largest bodies before it
// consumes; while another poller's batch holds the budget, it waits; the
// unused part of a reservation is given back at once.
func TestConsumeStaysWithinTheBodyBudget(t *testing.T) {
	const maxBody = 1 << 10
	a := &Activities{
		Consumer: bodyConsumer{body: make([]byte, 300)},
		Metrics:  metrics.NewPipeline(tally.NoopScope),
		Settings: Settings{BatchSize: 4, MaxBodyBytes: maxBody},
		Bodies:   bytebudget.New(4 * maxBody), // one batch's reservation
	}
	ctx := context.Background()
	_, done1, err := a.consume(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h := a.Bodies.Held(); h != 300 {
		t.Fatalf("after consume the batch holds %d bytes, want its 300 body bytes", h)
	}
	second := make(chan struct{})
	go func() {
		_, done2, err := a.consume(ctx, time.Second)
		if err == nil {
			done2()
		}
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a second batch was consumed while the first held the budget")
	case <-time.After(200 * time.Millisecond):
	}
	done1()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("the second batch never got room after the first was handed over")
	}
	if h := a.Bodies.Held(); h != 0 {
		t.Fatalf("%d bytes still held after both batches", h)
	}
}
