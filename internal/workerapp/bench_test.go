package workerapp

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// BenchmarkDrain publishes a backlog, starts one worker and measures the
// end-to-end drain into MariaDB through the embedded Temporal server:
// messages/s, Temporal history events per record, broker HTTP calls per
// message and database statements per message.
//
//	go test -run '^$' -bench BenchmarkDrain -benchtime 1x ./internal/workerapp
//
// SYNCBRIDGE_BENCH_MESSAGES sets the backlog (default 2000, over 80% as
// many keys, with duplicate delivery at 5%).
func BenchmarkDrain(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("SYNCBRIDGE_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		benchDrainOnce(b, n)
	}
}

func benchDrainOnce(b *testing.B, n int) {
	b.StopTimer()
	p := newPipe(b, mqemu.Config{InvisibleTime: time.Minute, Faults: mqemu.Faults{DuplicateRate: 0.05}, Seed: 1},
		map[string]string{"SYNCBRIDGE_POLLERS": "2", "SYNCBRIDGE_MAX_INFLIGHT": "400"})

	// Count broker calls by fronting the emulator with a counting handler.
	var mqCalls atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mqCalls.Add(1)
		p.env.MQ.ServeHTTP(w, r)
	}))
	defer front.Close()
	p.vars["ROCKETMQ_ENDPOINT"] = front.URL

	msgs := generate(syncevent.GenOptions{Count: n, DistinctKeys: n * 4 / 5, ChangedRate: 0.2, Seed: 99, KeyPrefix: "bench-"})
	p.publish(msgs)
	mqCalls.Store(0)

	q0 := questions(b, p.env.DB)
	b.StartTimer()
	start := time.Now()
	w := p.worker(Options{})
	p.waitDrained(len(msgs), 30*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	q1 := questions(b, p.env.DB)
	_ = w.stop()

	events, records := historyEvents(b, p)
	b.ReportMetric(float64(len(msgs))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(events)/float64(records), "events/record")
	b.ReportMetric(float64(mqCalls.Load())/float64(len(msgs)), "mq_calls/msg")
	b.ReportMetric(float64(q1-q0)/float64(len(msgs)), "db_stmts/msg")
	b.Logf("drained %d messages (%d keys) in %s: %d record workflows, %d broker calls, %d database statements",
		len(msgs), n*4/5, elapsed.Round(time.Millisecond), records, mqCalls.Load(), q1-q0)
}

// questions reads the server's statement counter. Other clients of the
// server add to it, so run benchmarks alone.
func questions(b *testing.B, db *sql.DB) int64 {
	var name string
	var v int64
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Questions'").Scan(&name, &v); err != nil {
		b.Fatal(err)
	}
	return v
}

func historyEvents(b *testing.B, p *pipe) (events, records int64) {
	ctx := context.Background()
	var token []byte
	for {
		resp, err := p.env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         "WorkflowType = '" + contract.RecordWorkflowName + "' AND TaskQueue = '" + p.env.TaskQueue + "'",
			PageSize:      500,
			NextPageToken: token,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			events += e.GetHistoryLength()
			records++
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return events, records
		}
	}
}
