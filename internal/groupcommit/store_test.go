package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func parse(t *testing.T, key, msg, notes string) syncevent.Event {
	t.Helper()
	e, err := syncevent.Parse(key, msg, fmt.Appendf(nil, `{"patientData":{"patientId":"P1","notes":%q},"deviceTimestamp":1}`, notes))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// 200 concurrent callers against the real store: each gets Insert's
// answer, the rows are what one Insert per message would leave, and the
// callers shared far fewer transactions than there were messages.
func TestCommitterWithStore(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db, err := store.Open(ctx, storetest.NewDatabase(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// 20 existing records, each met again by a duplicate (another message,
	// same content) and a conflict (other content).
	for i := range 20 {
		if _, err := st.Insert(ctx, parse(t, fmt.Sprintf("old-%02d", i), fmt.Sprintf("first-%02d", i), "a")); err != nil {
			t.Fatal(err)
		}
	}
	type call struct {
		ev   syncevent.Event
		want store.Outcome
	}
	var calls []call
	for i := range 160 {
		calls = append(calls, call{parse(t, fmt.Sprintf("new-%03d", i), fmt.Sprintf("m-new-%03d", i), "n"), store.Inserted})
	}
	for i := range 20 {
		calls = append(calls,
			call{parse(t, fmt.Sprintf("old-%02d", i), fmt.Sprintf("m-dup-%02d", i), "a"), store.Duplicate},
			call{parse(t, fmt.Sprintf("old-%02d", i), fmt.Sprintf("m-conf-%02d", i), "b"), store.Conflict})
	}
	bad := parse(t, "bad", "m-bad", "x")
	bad.PatientID = string(make([]byte, 100)) // longer than patient_id's 64
	var (
		mu               sync.Mutex
		batches, maxSize int
	)
	c := New(st, Options{OnBatch: func(size int, took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		maxSize = max(maxSize, size)
	}})
	defer c.Close()

	var wg sync.WaitGroup
	for _, cl := range calls {
		wg.Go(func() {
			out, err := c.Insert(ctx, cl.ev)
			if err != nil || out != cl.want {
				t.Errorf("%s %s: %v, %v; want %s", cl.ev.Key, cl.ev.MessageID, out, err, cl.want)
			}
		})
	}
	wg.Go(func() {
		if _, err := c.Insert(ctx, bad); !store.IsBadData(err) {
			t.Errorf("bad event: %v, want bad data", err)
		}
	})
	wg.Wait()
	n := len(calls) + 1
	mu.Lock()
	t.Logf("%d messages in %d InsertBatch calls (largest %d)", n, batches, maxSize)
	if batches >= n/2 {
		t.Errorf("%d InsertBatch calls for %d concurrent messages", batches, n)
	}
	mu.Unlock()
	if got, err := st.CountRecords(ctx); err != nil || got != 180 {
		t.Errorf("CountRecords = %d, %v; want 180", got, err)
	}
	for i := range 20 {
		key := fmt.Sprintf("old-%02d", i)
		row, _, err := st.Record(ctx, key)
		cs, cerr := st.Conflicts(ctx, key)
		if err != nil || cerr != nil || row.MessageID != fmt.Sprintf("first-%02d", i) || len(cs) != 1 || cs[0].MessageID != fmt.Sprintf("m-conf-%02d", i) {
			t.Errorf("%s: row %+v, conflicts %+v (%v %v)", key, row, cs, err, cerr)
		}
	}
}

// gatedStore holds each InsertBatch call until released.
type gatedStore struct {
	*store.Store
	started chan struct{}
	release chan struct{}
}

func (g gatedStore) InsertBatch(ctx context.Context, evs []syncevent.Event) []store.BatchResult {
	g.started <- struct{}{}
	<-g.release
	return g.Store.InsertBatch(ctx, evs)
}

// A caller that gives up while its batch is under way gets ctx.Err(); the
// batch still commits, and the caller's retry (the activity retrying) is
// told Inserted, not Duplicate: the row is its own message's.
func TestCommitterCallerGivesUpThenRetries(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db, err := store.Open(ctx, storetest.NewDatabase(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	g := gatedStore{Store: st, started: make(chan struct{}, 1), release: make(chan struct{})}
	c := New(g, Options{})
	defer c.Close()

	e := parse(t, "k", "m1", "n")
	callCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := c.Insert(callCtx, e); errc <- err }()
	<-g.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller that gave up: %v, want context.Canceled", err)
	}
	close(g.release) // the batch commits after all
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, ok, err := st.Record(ctx, "k"); err != nil || ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("abandoned batch never committed")
		}
	}
	if out, err := c.Insert(ctx, e); err != nil || out != store.Inserted {
		t.Errorf("retry: %v, %v; want inserted", out, err)
	}
	if n, err := st.CountRecords(ctx); err != nil || n != 1 {
		t.Errorf("CountRecords = %d, %v; want 1", n, err)
	}
}

// The target of issue 9: in a flood, at most 1.2 statements and 0.5 round
// trips per message (one transaction per message took 3 to 5 statements
// and 4 to 8 round trips). Round trips are counted on every connection;
// statements on the session of a one-connection pool, the only way to count
// them on the shared server, and with four connections too.
func TestCommitterFloodCost(t *testing.T) {
	t.Parallel()
	for _, pool := range []int{1, 4} {
		t.Run(fmt.Sprintf("pool %d", pool), func(t *testing.T) {
			t.Parallel()
			floodCost(t, pool)
		})
	}
}

func floodCost(t *testing.T, pool int) {
	ctx := testCtx(t)
	dsn, trips := storetest.CountRoundTrips(storetest.NewDatabase(t))
	db, err := store.Open(ctx, dsn, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := st.Insert(ctx, parse(t, fmt.Sprintf("old-%02d", i), "first", "a")); err != nil {
			t.Fatal(err)
		}
	}
	var evs []syncevent.Event
	for i := range 160 {
		evs = append(evs, parse(t, fmt.Sprintf("new-%03d", i), fmt.Sprintf("m-%03d", i), "n"))
	}
	for i := range 20 {
		notes := "a" // a duplicate
		if i%2 == 1 {
			notes = "b" // a conflict
		}
		evs = append(evs, parse(t, fmt.Sprintf("old-%02d", i), fmt.Sprintf("m-old-%02d", i), notes))
	}
	c := New(st, Options{})
	defer c.Close()
	if c.Concurrency() != pool {
		t.Fatalf("Concurrency %d, want %d", c.Concurrency(), pool)
	}

	// With one connection, its session is the committer's only one.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q0, err := storetest.Questions(ctx, conn)
	_ = conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	t0 := trips.Load()
	var wg sync.WaitGroup
	for _, e := range evs {
		wg.Go(func() {
			if _, err := c.Insert(ctx, e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rt := trips.Load() - t0
	perTrip := float64(rt) / float64(len(evs))
	t.Logf("%d messages over %d connections: %d round trips (%.2f each)", len(evs), pool, rt, perTrip)
	if perTrip > 0.5 {
		t.Errorf("%.2f round trips per message, want at most 0.5", perTrip)
	}
	if pool != 1 {
		return
	}
	q1, err := storetest.Questions(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	stmts := q1 - q0 - 1 // the second reading counts itself
	perStmt := float64(stmts) / float64(len(evs))
	t.Logf("%d statements (%.2f each)", stmts, perStmt)
	if perStmt > 1.2 {
		t.Errorf("%.2f statements per message, want at most 1.2", perStmt)
	}
}
