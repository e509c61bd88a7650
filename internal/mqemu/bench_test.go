package mqemu

import (
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"
)

// Benchmarks go through the real Go SDK over loopback; README.md records
// the figures and the command.

var benchBody = strings.Repeat("x", 256)

func BenchmarkPublish(b *testing.B) {
	h := newHarness(b, Config{})
	p := h.producer(testTopic)
	msg := mq.PublishMessageRequest{MessageBody: benchBody, MessageTag: "bench", MessageKey: "k"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.PublishMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkPublishParallel(b *testing.B) {
	h := newHarness(b, Config{})
	msg := mq.PublishMessageRequest{MessageBody: benchBody}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := mq.NewAliyunMQClient(h.srv.URL, testAK, testSK, "").GetProducer("", testTopic)
		for pb.Next() {
			if _, err := p.PublishMessage(msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkConsumeAck measures one message through consume (batches of
// 16) and ack (one batch ack per consume); b.N messages are published
// beforehand, outside the timer.
func BenchmarkConsumeAck(b *testing.B) {
	h := newHarness(b, Config{InvisibleTime: time.Minute})
	for range b.N {
		if _, aerr := h.emu.publish(testTopic, publishInput{body: benchBody, props: map[string]string{}}); aerr != nil {
			b.Fatal(aerr)
		}
	}
	c := h.consumer(testTopic, "G", "")
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		msgs, err := consume(b, c, 16, 1, false)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.AckMessage(handlesOf(msgs)); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if s := h.emu.Stats(testTopic, "G"); s.Acked != b.N || s.Ready+s.InFlight != 0 {
		b.Fatalf("stats %+v after %d", s, b.N)
	}
}
