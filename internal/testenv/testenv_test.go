package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	mqhttp "github.com/aliyunmq/mq-http-go-sdk"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/internal/mqemu"
)

func TestMain(m *testing.M) { Main(m) }

// drainActivities is a miniature of the pipeline: consume from the
// emulator, insert into the test's database, ack after the insert.
type drainActivities struct {
	DB       *sql.DB
	Consumer mqhttp.MQConsumer
}

func (a *drainActivities) DrainOne(ctx context.Context) (string, error) {
	resps, errs := make(chan mqhttp.ConsumeMessageResponse, 1), make(chan error, 1)
	go a.Consumer.ConsumeMessage(resps, errs, 1, 5)
	select {
	case r := <-resps:
		m := r.Messages[0]
		if _, err := a.DB.ExecContext(ctx, "INSERT INTO records (message_key, body) VALUES (?, ?)", m.MessageKey, m.MessageBody); err != nil {
			return "", fmt.Errorf("insert: %w", err)
		}
		if err := a.Consumer.AckMessage([]string{m.ReceiptHandle}); err != nil {
			return "", fmt.Errorf("ack: %w", err)
		}
		return m.MessageKey, nil
	case err := <-errs:
		return "", fmt.Errorf("consume: %w", err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func drainWorkflow(ctx workflow.Context) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var a *drainActivities
	var key string
	err := workflow.ExecuteActivity(ctx, a.DrainOne).Get(ctx, &key)
	return key, err
}

func TestEnvCarriesAMessageFromQueueToDatabaseThroughTemporal(t *testing.T) {
	env := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.DB.ExecContext(ctx, `CREATE TABLE records (
		message_key VARCHAR(128) PRIMARY KEY, body TEXT NOT NULL,
		created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`); err != nil {
		t.Fatal(err)
	}

	mq := mqhttp.NewAliyunMQClient(env.MQURL, env.AccessKey, env.SecretKey, "")
	if _, err := mq.GetProducer(env.InstanceID, env.Topic).PublishMessage(mqhttp.PublishMessageRequest{
		MessageBody: `{"record":"r-1"}`, MessageTag: env.Tag, MessageKey: "key-1",
	}); err != nil {
		t.Fatalf("publish: %v", err)
	}

	w := worker.New(env.Client, env.TaskQueue, worker.Options{})
	w.RegisterWorkflow(drainWorkflow)
	w.RegisterActivity(&drainActivities{DB: env.DB, Consumer: mq.GetConsumer(env.InstanceID, env.Topic, env.Group, env.Tag)})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "drain-" + env.DBName, TaskQueue: env.TaskQueue}, drainWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var key string
	if err := run.Get(ctx, &key); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	var body string
	var created time.Time
	if err := env.DB.QueryRowContext(ctx, "SELECT body, created_at FROM records WHERE message_key = ?", key).Scan(&body, &created); err != nil {
		t.Fatalf("row for %q: %v", key, err)
	}
	if key != "key-1" || body != `{"record":"r-1"}` || time.Since(created) > time.Hour {
		t.Fatalf("row %q %q %v", key, body, created)
	}
	if st := env.MQ.Stats(env.Topic, env.Group); st.Acked != 1 || st.InFlight != 0 {
		t.Fatalf("emulator stats after the run: %+v", st)
	}
}

// TestEnvsAreIsolatedAndCleanedUp checks that two tests never share a
// database, task queue or emulator, and that cleanup drops and closes them.
func TestEnvsAreIsolatedAndCleanedUp(t *testing.T) {
	if testing.Short() {
		t.Skip("New skips in -short mode")
	}
	var seen []*Env
	for i := range 2 {
		t.Run(fmt.Sprint("env", i), func(t *testing.T) {
			e := New(t)
			if !strings.HasPrefix(e.DBName, "sbtest_") || !strings.Contains(e.DSN, "parseTime=true") {
				t.Fatalf("db %q dsn has no parseTime", e.DBName)
			}
			var current string
			if err := e.DB.QueryRow("SELECT DATABASE()").Scan(&current); err != nil || current != e.DBName {
				t.Fatalf("connected to %q (%v), want %q", current, err, e.DBName)
			}
			seen = append(seen, e)
		})
	}
	if len(seen) != 2 {
		t.Fatal("a subtest failed")
	}
	a, b := seen[0], seen[1]
	if a.DBName == b.DBName || a.TaskQueue == b.TaskQueue || a.MQURL == b.MQURL {
		t.Fatalf("envs share state: %s/%s, %s/%s, %s/%s", a.DBName, b.DBName, a.TaskQueue, b.TaskQueue, a.MQURL, b.MQURL)
	}
	if a.TemporalAddr != b.TemporalAddr {
		t.Fatalf("the package should share one Temporal server: %s vs %s", a.TemporalAddr, b.TemporalAddr)
	}

	admin, err := sql.Open("mysql", MariaDBAdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, e := range seen {
		var n int
		if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", e.DBName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s survived its test", e.DBName)
		}
		if resp, err := http.Get(e.MQURL + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("emulator %s still answers after its test", e.MQURL)
		}
	}
}

func TestOptionsReachTheEmulator(t *testing.T) {
	env := New(t, Options{MQ: mqemu.Config{MaxLongPoll: time.Second}})
	consumer := mqhttp.NewAliyunMQClient(env.MQURL, env.AccessKey, env.SecretKey, "").
		GetConsumer(env.InstanceID, env.Topic, env.Group, env.Tag)
	resps, errs := make(chan mqhttp.ConsumeMessageResponse, 1), make(chan error, 1)
	start := time.Now()
	// Asks for a 20 s long poll; the overridden cap must end it after 1 s.
	go consumer.ConsumeMessage(resps, errs, 1, 20)
	select {
	case r := <-resps:
		t.Fatalf("empty topic returned %+v", r.Messages)
	case err := <-errs:
		if !strings.Contains(err.Error(), "MessageNotExist") {
			t.Fatalf("consume: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll ignored MaxLongPoll")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("long poll took %v, want about 1s", d)
	}
}

func TestMariaDBAdminDSN(t *testing.T) {
	t.Setenv(MySQLDSNEnv, "")
	if got := MariaDBAdminDSN(); got != "root@tcp(127.0.0.1:3306)/" {
		t.Fatalf("default %q", got)
	}
	t.Setenv(MySQLDSNEnv, "u:p@tcp(db:3306)/")
	if got := MariaDBAdminDSN(); got != "u:p@tcp(db:3306)/" {
		t.Fatalf("from env %q", got)
	}
}

func TestSanitize(t *testing.T) {
	if got := sanitize("TestX/sub case#1"); got != "TestX-sub-case-1" {
		t.Fatalf("sanitize: %q", got)
	}
	if got := sanitize(strings.Repeat("a", 200)); len(got) != 80 {
		t.Fatalf("len %d", len(got))
	}
}

// fatalTB records the first Fatalf and stops the caller like testing does.
type fatalTB struct {
	testing.TB
	msg string
}

type fatalStop struct{}

func (f *fatalTB) Helper()        {}
func (f *fatalTB) Cleanup(func()) {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatalStop{})
}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(fatalStop{})
}

func TestUnreachableMariaDBFailsClearly(t *testing.T) {
	t.Setenv(MySQLDSNEnv, "root:pw-not-shown@tcp(127.0.0.1:1)/")
	ftb := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatalStop); !ok {
					panic(r)
				}
			}
		}()
		(&Env{}).openDatabase(ftb)
	}()
	if !strings.Contains(ftb.msg, "unreachable") || !strings.Contains(ftb.msg, "127.0.0.1:1") || !strings.Contains(ftb.msg, MySQLDSNEnv) {
		t.Fatalf("want a clear unreachable message naming the address and %s, got %q", MySQLDSNEnv, ftb.msg)
	}
	if strings.Contains(ftb.msg, "pw-not-shown") {
		t.Fatalf("message shows the password: %q", ftb.msg)
	}
}
