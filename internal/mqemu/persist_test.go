package mqemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"

	"github.com/syncbridge/syncbridge/internal/testwait"
)

func TestPersistenceRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.json")
	cfg := Config{
		Credentials:   []Credential{{testAK, testSK}},
		Topics:        []string{testTopic},
		InvisibleTime: 30 * time.Second,
		PersistPath:   path,
	}
	emu, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Serve("127.0.0.1:0", emu)
	if err != nil {
		t.Fatal(err)
	}
	client := mq.NewAliyunMQClient(srv.URL, testAK, testSK, "")
	p := client.GetProducer("", testTopic)
	for _, b := range []string{"acked", "inflight", "backlog-1", "backlog-2"} {
		if _, err := p.PublishMessage(mq.PublishMessageRequest{MessageBody: b, MessageKey: "key-" + b, ShardingKey: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	c := client.GetConsumer("", testTopic, "G", "")
	got := mustConsume(t, c, 2, 1)
	if err := c.AckMessage([]string{got[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	inflight := got[1]
	before := emu.Stats(testTopic, "G")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := emu.Close(); err != nil {
		t.Fatalf("Close (saves): %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("state dir holds %v, want only the state file (no temp files)", entries)
	}

	// A restarted dev stack keeps its backlog, acks and in-flight handles.
	emu2, err := New(cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer emu2.Close()
	srv2, err := Serve("127.0.0.1:0", emu2)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if after := emu2.Stats(testTopic, "G"); after != before {
		t.Fatalf("stats after reload %+v, before %+v", after, before)
	}
	client2 := mq.NewAliyunMQClient(srv2.URL, testAK, testSK, "")
	c2 := client2.GetConsumer("", testTopic, "G", "")
	if err := c2.AckMessage([]string{inflight.ReceiptHandle}); err != nil {
		t.Fatalf("ack of a handle issued before the restart: %v", err)
	}
	rest := mustConsume(t, c2, 16, 1)
	if got := bodiesOf(rest); len(got) != 2 || got[0] != "backlog-1" || got[1] != "backlog-2" {
		t.Fatalf("backlog after reload %v", got)
	}
	if rest[0].MessageKey != "key-backlog-1" || rest[0].ShardingKey != "s" {
		t.Fatalf("fields lost in reload: %+v", rest[0])
	}
	if err := c2.AckMessage(handlesOf(rest)); err != nil {
		t.Fatal(err)
	}
	// Message IDs keep being unique across the restart.
	pub, err := client2.GetProducer("", testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: "new"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(got, rest...) {
		if m.MessageId == pub.MessageId {
			t.Fatalf("message id %s reused after reload", pub.MessageId)
		}
	}
	if s := emu2.Stats(testTopic, "G"); s.Acked != 4 || s.Ready != 1 || s.InFlight != 0 {
		t.Fatalf("final stats %+v", s)
	}
}

func TestPersistencePeriodicSaveAndBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	emu, err := New(Config{Credentials: []Credential{{"ak", "sk"}}, AutoCreateTopics: true, PersistPath: path, PersistInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	emu.CreateTopic("periodic")
	testwait.Until(t, 10*time.Second, "the periodic save", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), `"periodic"`)
	})

	corrupt := filepath.Join(dir, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e, err := New(Config{Credentials: []Credential{{"ak", "sk"}}, PersistPath: corrupt}); err == nil {
		e.Close()
		t.Fatal("New accepted a corrupt state file")
	}
	future := filepath.Join(dir, "future.json")
	if err := os.WriteFile(future, []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if e, err := New(Config{Credentials: []Credential{{"ak", "sk"}}, PersistPath: future}); err == nil || !strings.Contains(err.Error(), "version") {
		if e != nil {
			e.Close()
		}
		t.Fatalf("New with a future state version: %v", err)
	}
}
