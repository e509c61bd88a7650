package devstack

import (
	"context"
	"database/sql"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	mqhttp "github.com/aliyunmq/mq-http-go-sdk"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// TestStackServesWhatTheBannerSays starts the whole stack on free ports and
// uses only what the banner's export lines give a second terminal: if any
// value were wrong or badly quoted, one of the clients below would fail.
func TestStackServesWhatTheBannerSays(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := Start(ctx, Options{
		Temporal: TemporalOptions{FrontendAddr: "127.0.0.1:0", UIAddr: "127.0.0.1:0"},
		MQAddr:   "127.0.0.1:0",
		DBAddr:   "127.0.0.1:0",
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	t.Logf("stack up in %v", time.Since(start).Round(time.Millisecond))

	banner := s.Banner("http://127.0.0.1:9090/metrics")
	t.Logf("banner:\n%s", banner)
	for _, want := range []string{s.Temporal.Address(), s.Temporal.UIURL(), s.MQServer.URL,
		"http://127.0.0.1:9090/metrics", s.DSN, "in memory"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q", want)
		}
	}

	env := exportedEnv(t, banner)
	wantNames := []string{"ROCKETMQ_ENDPOINT", "ALIBABA_ACCESS_KEY", "ALIBABA_SECRET_KEY", "ROCKETMQ_INSTANCE_ID",
		"ROCKETMQ_TOPIC", "ROCKETMQ_GROUP_ID", "ROCKETMQ_TAG", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "POLARDB_DSN"}
	pairs := s.Env()
	if len(pairs) != len(wantNames) {
		t.Fatalf("Env has %d entries, want %d", len(pairs), len(wantNames))
	}
	for i, kv := range pairs {
		if kv[0] != wantNames[i] {
			t.Errorf("Env[%d] = %s, want %s", i, kv[0], wantNames[i])
		}
		if kv[1] == "" || env[kv[0]] != kv[1] {
			t.Errorf("%s: the shell got %q from the banner, Env says %q", kv[0], env[kv[0]], kv[1])
		}
	}

	t.Run("rocketmq", func(t *testing.T) {
		mq := mqhttp.NewAliyunMQClient(env["ROCKETMQ_ENDPOINT"], env["ALIBABA_ACCESS_KEY"], env["ALIBABA_SECRET_KEY"], "")
		producer := mq.GetProducer(env["ROCKETMQ_INSTANCE_ID"], env["ROCKETMQ_TOPIC"])
		if _, err := producer.PublishMessage(mqhttp.PublishMessageRequest{
			MessageBody: `{"probe":1}`, MessageTag: env["ROCKETMQ_TAG"], MessageKey: "stack-probe-1",
		}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		consumer := mq.GetConsumer(env["ROCKETMQ_INSTANCE_ID"], env["ROCKETMQ_TOPIC"], env["ROCKETMQ_GROUP_ID"], env["ROCKETMQ_TAG"])
		resps, errs := make(chan mqhttp.ConsumeMessageResponse, 1), make(chan error, 1)
		go consumer.ConsumeMessage(resps, errs, 16, 3)
		select {
		case r := <-resps:
			if len(r.Messages) != 1 || r.Messages[0].MessageBody != `{"probe":1}` {
				t.Fatalf("consumed %+v", r.Messages)
			}
			if err := consumer.AckMessage([]string{r.Messages[0].ReceiptHandle}); err != nil {
				t.Fatalf("ack: %v", err)
			}
		case err := <-errs:
			t.Fatalf("consume: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("consume: no answer in 20s")
		}
	})

	t.Run("database", func(t *testing.T) {
		db, err := sql.Open("mysql", env["POLARDB_DSN"])
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1: %v, %d", err, one)
		}
	})

	t.Run("temporal", func(t *testing.T) {
		c, err := client.Dial(client.Options{HostPort: env["TEMPORAL_ADDRESS"], Namespace: env["TEMPORAL_NAMESPACE"],
			Logger: nopSDKLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Options left SearchAttributes nil: the pipeline's must be there.
		if _, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: env["TEMPORAL_NAMESPACE"], Query: searchAttributeProbe(searchattr.All()),
		}); err != nil {
			t.Fatalf("query by the pipeline's search attributes: %v", err)
		}
	})

	addrs := []string{s.Temporal.Address(), strings.TrimPrefix(s.Temporal.UIURL(), "http://"),
		strings.TrimPrefix(s.MQServer.URL, "http://"), s.DB.Addr()}
	closed = true
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	for _, a := range addrs {
		assertFree(t, a)
	}
}

// exportedEnv runs the banner's export lines in a POSIX shell and returns
// what the shell ended up with.
func exportedEnv(t *testing.T, banner string) map[string]string {
	t.Helper()
	var script strings.Builder
	for _, line := range strings.Split(banner, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "export ") {
			script.WriteString(l + "\n")
		}
	}
	script.WriteString("env\n")
	out, err := exec.Command("sh", "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("sh rejected the banner's exports: %v\n%s", err, script.String())
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func nopSDKLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

func assertFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("%s still in use after Close: %v", addr, err)
		return
	}
	ln.Close()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := reserveAddr("127.0.0.1:0", "test")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestStartFailureStopsWhatStarted(t *testing.T) {
	skipShort(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	frontend, ui, db := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The emulator starts last, so its busy port fails the start after the
	// database, Temporal and the UI are all up.
	_, err = Start(ctx, Options{
		Temporal: TemporalOptions{FrontendAddr: frontend, UIAddr: ui},
		MQAddr:   busy.Addr().String(),
		DBAddr:   db,
		Logger:   testLogger(t),
	})
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("want an error naming the busy emulator port %s, got %v", busy.Addr(), err)
	}
	for _, a := range []string{frontend, ui, db} {
		assertFree(t, a)
	}
}

func TestStartRejectsBadDSNWithoutShowingIt(t *testing.T) {
	_, err := Start(context.Background(), Options{DSN: "app:hunter2@tcp(db:3306"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error that hides the DSN, got %v", err)
	}
}

func TestBannerMasksExternalPassword(t *testing.T) {
	s := &Stack{
		Temporal: &Temporal{addr: "127.0.0.1:7233", ns: "default"},
		MQServer: &mqemu.Server{URL: "http://127.0.0.1:9876"},
		DSN:      "app:hunter2@tcp(polardb.internal:3306)/syncbridge?parseTime=true",
		Topic:    DefaultTopic, Group: DefaultGroup, Tag: DefaultTag, InstanceID: DefaultInstanceID,
		AccessKey: DefaultAccessKey, SecretKey: DefaultSecretKey,
	}
	b := s.Banner("")
	if strings.Contains(b, "hunter2") {
		t.Fatalf("banner shows the external DSN's password:\n%s", b)
	}
	if !strings.Contains(b, "app:****@tcp(polardb.internal:3306)/syncbridge") || !strings.Contains(b, "(external)") {
		t.Fatalf("banner lacks the masked DSN:\n%s", b)
	}
	if strings.Contains(b, "Metrics") || strings.Contains(b, "Web UI") {
		t.Fatalf("banner shows endpoints that are off:\n%s", b)
	}
	if !strings.Contains(b, "export ALIBABA_SECRET_KEY="+DefaultSecretKey) {
		t.Fatalf("banner lacks the dev secret export:\n%s", b)
	}
}

func TestOptionsDefaultsFillTheEmulator(t *testing.T) {
	own := []mqemu.Credential{{AccessKey: "mine", SecretKey: "my-secret"}}
	o := Options{MQ: mqemu.Config{Credentials: own, Topics: []string{"other"}}}.withDefaults()
	if o.InstanceID != DefaultInstanceID || o.MQ.InstanceID != DefaultInstanceID {
		t.Errorf("instance %q / %q", o.InstanceID, o.MQ.InstanceID)
	}
	if len(o.MQ.Credentials) != 2 || o.MQ.Credentials[1] != (mqemu.Credential{AccessKey: DefaultAccessKey, SecretKey: DefaultSecretKey}) {
		t.Errorf("credentials %d entries", len(o.MQ.Credentials))
	}
	if len(own) != 1 {
		t.Error("the caller's credential slice was modified")
	}
	if strings.Join(o.MQ.Topics, ",") != "other,"+DefaultTopic {
		t.Errorf("topics %v", o.MQ.Topics)
	}
	if o.Temporal.SearchAttributes == nil || o.MQ.Logger == nil || o.Temporal.Logger == nil {
		t.Error("search attributes or loggers left nil")
	}
	// An instance set only on the emulator is the one the stack reports.
	o = Options{MQ: mqemu.Config{InstanceID: "MQ_INST_custom"}}.withDefaults()
	if o.InstanceID != "MQ_INST_custom" || o.MQ.InstanceID != "MQ_INST_custom" {
		t.Errorf("instance %q / %q", o.InstanceID, o.MQ.InstanceID)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"patient-sync":                       "patient-sync",
		"http://127.0.0.1:9876":              "http://127.0.0.1:9876",
		"root@tcp(127.0.0.1:3307)/x?a=b&c=d": "'root@tcp(127.0.0.1:3307)/x?a=b&c=d'",
		"it's":                               `'it'\''s'`,
		"":                                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
