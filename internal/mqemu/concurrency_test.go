package mqemu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"

	"github.com/syncbridge/syncbridge/internal/testwait"
)

// TestConcurrentConsumersOneGroup runs several SDK consumers in one group
// while some deliveries are deliberately left unacked. It checks that no
// message is handed to a second consumer while an earlier delivery is
// still invisible, and that every message is acked exactly once.
func TestConcurrentConsumersOneGroup(t *testing.T) {
	t.Parallel()
	const (
		messages  = 300
		consumers = 4
		invisible = time.Second
	)
	h := newHarness(t, Config{InvisibleTime: invisible})
	published := map[string]bool{}
	for i := range messages {
		published[h.publish(testTopic, mq.PublishMessageRequest{MessageBody: fmt.Sprintf("m-%03d", i)}).MessageId] = true
	}

	type held struct {
		consumer int
		until    int64 // NextConsumeTime of the latest delivery
	}
	var (
		mu       sync.Mutex
		last     = map[string]held{}
		acked    = map[string]int{}
		problems []string
		rng      = rand.New(rand.NewPCG(1, 2))
	)
	invisMs := invisible.Milliseconds()
	var done atomic.Bool
	var wg sync.WaitGroup
	for ci := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each consumer has its own client and connections.
			c := mq.NewAliyunMQClient(h.srv.URL, testAK, testSK, "").GetConsumer("", testTopic, "G", "")
			for !done.Load() {
				msgs, err := consume(t, c, 8, 1, false)
				if isNotExist(err) {
					continue
				}
				if err != nil {
					t.Errorf("consumer %d: %v", ci, err)
					return
				}
				var toAck []string
				mu.Lock()
				for _, m := range msgs {
					deliveredAt := m.NextConsumeTime - invisMs
					if prev, ok := last[m.MessageId]; ok && deliveredAt < prev.until {
						problems = append(problems, fmt.Sprintf("%s given to consumer %d at %d while consumer %d holds it until %d",
							m.MessageId, ci, deliveredAt, prev.consumer, prev.until))
					}
					if acked[m.MessageId] > 0 {
						problems = append(problems, fmt.Sprintf("%s delivered again after its ack", m.MessageId))
					}
					last[m.MessageId] = held{ci, m.NextConsumeTime}
					if rng.IntN(10) > 0 { // leave 10% unacked: they must come back
						toAck = append(toAck, m.ReceiptHandle)
					}
				}
				mu.Unlock()
				if len(toAck) == 0 {
					continue
				}
				failed := map[string]bool{}
				if err := c.AckMessage(toAck); err != nil {
					for _, it := range ackItems(t, err) {
						failed[it.ErrorHandle] = true // expired while we were slow: it will return
					}
				}
				mu.Lock()
				for _, m := range msgs {
					if slicesContains(toAck, m.ReceiptHandle) && !failed[m.ReceiptHandle] {
						acked[m.MessageId]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	testwait.Until(t, 45*time.Second, "every message to be acked", func() bool {
		return h.emu.Stats(testTopic, "G").Acked == messages
	})
	done.Store(true)
	wg.Wait()

	for _, p := range problems {
		t.Error(p)
	}
	if len(acked) != messages {
		t.Errorf("%d distinct messages acked, want %d", len(acked), messages)
	}
	for id, n := range acked {
		if !published[id] {
			t.Errorf("acked unknown message %s", id)
		}
		if n != 1 {
			t.Errorf("message %s acked %d times", id, n)
		}
	}
	s := h.emu.Stats(testTopic, "G")
	if s.Acked != messages || s.Ready != 0 || s.InFlight != 0 || s.DeadLettered != 0 || s.Delivered <= messages {
		t.Errorf("final stats %+v: want all acked, nothing left, some redeliveries", s)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
