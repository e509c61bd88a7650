package workerapp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

// Flood mode is judged against two loops without Temporal, on the same
// data, emulator and database server, in the same run:
//
//   - plain: the consumer loop syncbridge replaces (benchPlainConsumer),
//     the baseline of the speed-up;
//   - bulk: the fastest honest loop for the same work (benchBulkCeiling),
//     the physical limit flood mode is measured against.
//
// SYNCBRIDGE_BENCH_EXCEPTIONS lists the exception mixes (percent of the
// backlog that are conflicts or bad input), default "5,20": the three run
// once per mix. Within a mix they run in mirror order (flood, bulk, plain,
// plain, bulk, flood), so the embedded server's slowdown as it fills is
// shared out evenly, and each rate is taken over its two runs.
// SYNCBRIDGE_BENCH_FLOOD_ROUNDS (default 1) repeats that sequence: on the
// shared 2-core machine the same drain's CPU seconds moved by half between
// two runs of one benchmark (the machine, not the code, was slower), and a
// ratio over more runs moves less.
func benchFloodFamily(b *testing.B, n int, phases map[string]bool) {
	rounds := benchFloodRounds(b)
	for _, pct := range benchExceptionMixes(b) {
		var flood, bulk, plain drainResult
		var seq []string
		for range rounds {
			seq = append(seq, "flood", "bulk", "plain", "plain", "bulk", "flood")
		}
		for _, ph := range seq {
			if len(phases) > 0 && !phases[ph] {
				continue
			}
			name := fmt.Sprintf("%s (exceptions %d%%)", ph, pct)
			msgs := floodData(n, ph+"-", float64(pct)/100)
			switch ph {
			case "flood":
				flood = flood.add(name, benchPipeline(b, msgs, "flood"))
			case "bulk":
				bulk = bulk.add(name, benchBulkCeiling(b, msgs))
			case "plain":
				plain = plain.add(name, benchPlainConsumer(b, msgs))
			}
		}
		tag := "flood" + strconv.Itoa(pct)
		flood.reportCPU(b, tag)
		bulk.reportCPU(b, tag+"_bulk")
		plain.reportCPU(b, tag+"_plain")
		if flood.runs > 0 {
			b.ReportMetric(flood.rate(), tag+"_msgs/s")
			b.ReportMetric(flood.findable.Seconds(), tag+"_findable_s")
			b.ReportMetric(flood.stmtsPerMsg, tag+"_db_stmts/msg")
			b.ReportMetric(flood.mqPerMsg, tag+"_mq_calls/msg")
			b.ReportMetric(float64(flood.records)/float64(flood.msgs), tag+"_runs/msg")
			b.ReportMetric(flood.eventsPerMsg, tag+"_events/msg")
			b.ReportMetric(flood.actionsPerMsg, tag+"_actions/msg")
		}
		if bulk.runs > 0 {
			b.ReportMetric(bulk.rate(), tag+"_bulk_msgs/s")
			if flood.runs > 0 {
				b.ReportMetric(flood.rate()/bulk.rate(), tag+"_x_bulk")
			}
		}
		if plain.runs > 0 {
			b.ReportMetric(plain.rate(), tag+"_plain_msgs/s")
			if flood.runs > 0 {
				b.ReportMetric(flood.rate()/plain.rate(), tag+"_x_plain")
			}
		}
	}
}

// benchFloodRounds is SYNCBRIDGE_BENCH_FLOOD_ROUNDS, default 1.
func benchFloodRounds(b *testing.B) int {
	v := os.Getenv("SYNCBRIDGE_BENCH_FLOOD_ROUNDS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10 {
		b.Fatalf("SYNCBRIDGE_BENCH_FLOOD_ROUNDS=%q: want 1 to 10", v)
	}
	return n
}

// benchFloodMessages is the backlog of the flood family,
// SYNCBRIDGE_BENCH_FLOOD_MESSAGES, default 30,000: at flood and bulk speed
// 10,000 messages drained in about a second, and one stall of the shared
// machine (a GC, another process's burst) moved a run by half.
func benchFloodMessages(b *testing.B) int {
	v := os.Getenv("SYNCBRIDGE_BENCH_FLOOD_MESSAGES")
	if v == "" {
		return 30_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		b.Fatalf("SYNCBRIDGE_BENCH_FLOOD_MESSAGES=%q: want a count of at least 1000", v)
	}
	return n
}

func benchExceptionMixes(b *testing.B) []int {
	v := os.Getenv("SYNCBRIDGE_BENCH_EXCEPTIONS")
	if v == "" {
		v = "5,20"
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		pct, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pct < 1 || pct > 20 {
			b.Fatalf("SYNCBRIDGE_BENCH_EXCEPTIONS=%q: want percentages from 1 to 20, comma separated", v)
		}
		out = append(out, pct)
	}
	return out
}

// floodData is a backlog of n messages of which exc are exceptions: a fifth
// of them bad input, the rest changed versions of earlier keys
// (conflicts). 80% of the messages are first versions of their key and the
// rest republish one (duplicates unless changed), as after a gateway
// reopens; the emulator adds 5% duplicate delivery.
func floodData(n int, prefix string, exc float64) []syncevent.OutMessage {
	bad := exc / 5
	repub := 1 - 0.8 - bad
	return generate(syncevent.GenOptions{Count: n, DistinctKeys: n * 4 / 5, ChangedRate: (exc - bad) / repub,
		BadRate: bad, Seed: 99, KeyPrefix: prefix})
}

// benchBulkCeiling drains msgs the fastest honest way without Temporal:
// two loops (flood mode's two pollers) each gathering up to 16 consume
// calls of 16 messages (bulkGather), parsing them, storing the group with the store
// call flood mode uses (unique key, payload hash, conflict and quarantine
// rows, no record notices), and acking in calls of 16 only after the
// commit; each loop consumes its next group while the last is committed
// and acked. No visibility query, no record run, no pacing.
func benchBulkCeiling(b *testing.B, msgs []syncevent.OutMessage) drainResult {
	p := newPipe(b, mqemu.Config{InvisibleTime: time.Minute, Faults: mqemu.Faults{DuplicateRate: benchDupRate}, Seed: 1}, nil)
	p.env.Logger = quietLogger()
	ctx := context.Background()
	db, err := store.Open(ctx, p.env.DSN, 10)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st := store.New(db)
	st.SingleStatementInserts = true
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	clock := drainClock{meter: benchCPUMeter(b)}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clock.observe(r)
		p.env.MQ.ServeHTTP(w, r)
	}))
	defer front.Close()
	p.publish(msgs)
	c := mqclient.NewConsumer(mqclient.Endpoint{URL: front.URL, AccessKey: p.env.AccessKey, SecretKey: p.env.SecretKey, InstanceID: p.env.InstanceID},
		p.env.Topic, p.env.Group, "")

	stopProfile := benchProfile(b, "bulk")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var settling sync.WaitGroup
			for {
				select {
				case <-done:
					settling.Wait()
					return
				default:
				}
				group := bulkGather(ctx, b, c)
				if len(group) == 0 {
					continue
				}
				settling.Wait() // one group settling at a time, as flood mode
				settling.Go(func() { bulkSettle(ctx, b, st, c, group) })
			}
		})
	}
	elapsed := clock.waitAcked(b, "bulk", p, len(msgs), 10*time.Minute)
	cpu := clock.cpuSince()
	stopProfile()
	close(done)
	wg.Wait()
	return drainResult{runs: 1, msgs: len(msgs), elapsed: elapsed, cpu: cpu}
}

// bulkGather consumes up to 16 batches of 16, stopping at a short one: a
// long poll for the first, short polls for the rest, as flood mode.
func bulkGather(ctx context.Context, b *testing.B, c mqclient.Consumer) []mqclient.Message {
	var group []mqclient.Message
	for range 16 {
		wait := time.Second // the HTTP API's shortest long poll
		if len(group) > 0 {
			wait = 0 // a short poll
		}
		got, err := c.Consume(ctx, 16, wait)
		if err != nil {
			b.Error(err)
			return group
		}
		group = append(group, got...)
		if len(got) < 16 {
			break
		}
	}
	return group
}

// bulkSettle parses and stores a group, then acks what is stored.
func bulkSettle(ctx context.Context, b *testing.B, st *store.Store, c mqclient.Consumer, group []mqclient.Message) {
	var evs []syncevent.Event
	var evHandles []string
	var bad []store.QuarantineEntry
	var badHandles []string
	for _, m := range group {
		ev, err := syncevent.Parse(m.Key, m.MessageID, m.Body)
		if err != nil {
			bad = append(bad, store.QuarantineEntry{Key: m.Key, MessageID: m.MessageID, Reason: "bench", Detail: err.Error(), Body: m.Body})
			badHandles = append(badHandles, m.ReceiptHandle)
			continue
		}
		evs = append(evs, ev)
		evHandles = append(evHandles, m.ReceiptHandle)
	}
	res := st.InsertFlood(ctx, evs, bad, time.Time{})
	if res.Quarantine != nil {
		b.Error(res.Quarantine)
		return
	}
	handles := badHandles
	for i, r := range res.Records {
		if r.Err != nil {
			b.Error(r.Err)
			continue
		}
		handles = append(handles, evHandles[i])
	}
	var acks sync.WaitGroup
	for start := 0; start < len(handles); start += 16 {
		chunk := handles[start:min(start+16, len(handles))]
		acks.Go(func() {
			if _, err := c.Ack(ctx, chunk); err != nil {
				b.Error(err)
			}
		})
	}
	acks.Wait()
}

// benchFloodRSS drains a backlog of n messages (floodData at 5%
// exceptions) with the real worker binary in flood mode and samples the
// worker process's resident memory every 200 ms. The embedded Temporal
// server and the emulator live in the benchmark's process, so the figure
// is the worker's alone. It returns the peak (VmHWM) in MiB and the drain
// rate.
func benchFloodRSS(b *testing.B, n int) (peakMiB, rate float64) {
	p := newPipe(b, mqemu.Config{InvisibleTime: 10 * time.Minute, Faults: mqemu.Faults{DuplicateRate: benchDupRate}, Seed: 1},
		map[string]string{"SYNCBRIDGE_FLOOD_MODE": "true", "SYNCBRIDGE_POLLERS": "2", "SYNCBRIDGE_LOG_LEVEL": "warn"})
	p.env.Logger = quietLogger()
	w := p.worker(Options{Logger: quietLogger()}) // migrates
	_ = w.stop()
	msgs := floodData(n, "rss-", 0.05)
	// Published from 8 goroutines: 200,000 one by one take minutes.
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Go(func() {
			prod := mqclient.NewProducer(mqclient.Endpoint{URL: p.env.MQURL, AccessKey: p.env.AccessKey, SecretKey: p.env.SecretKey, InstanceID: p.env.InstanceID}, p.env.Topic)
			for i := k; i < len(msgs); i += 8 {
				if _, err := prod.Publish(context.Background(), msgs[i].Key, msgs[i].Tag, msgs[i].Body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cmd := p.process(testenv.WorkerBinary(b))
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	start := time.Now()
	var peak int64
	for {
		if kb := procStatusKB(cmd.Process.Pid, "VmHWM"); kb > peak {
			peak = kb
		}
		st := p.env.MQ.Stats(p.env.Topic, p.env.Group)
		if st.Published == len(msgs) && st.Ready == 0 && st.InFlight == 0 {
			break
		}
		if time.Since(start) > 30*time.Minute {
			b.Fatalf("not drained: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	return float64(peak) / 1024, float64(len(msgs)) / elapsed.Seconds()
}

// procStatusKB reads a kB field of /proc/PID/status; 0 if unreadable.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
