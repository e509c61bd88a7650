package mqemu

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reserved property keys the SDKs use for message fields.
const (
	propKeys          = "KEYS"
	propStartDeliver  = "__STARTDELIVERTIME"
	propTransCheck    = "__TransCheckT"
	propShardingKey   = "__SHARDINGKEY"
	transCheckMinSecs = 10
	transCheckMaxSecs = 300
)

// Emulator is an in-memory RocketMQ HTTP broker. It is an http.Handler
// (see ServeHTTP) and is safe for concurrent use. Create it with New and
// release it with Close.
type Emulator struct {
	cfg      Config
	log      *slog.Logger
	secrets  map[string]string // access key -> secret
	idPrefix uint32            // distinguishes IDs across restarts

	mu        sync.Mutex
	topics    map[string]*topic
	faults    Faults
	rng       *rand.Rand
	msgSeq    uint64
	handleSeq uint64
	dirty     bool // state changed since the last save
	closed    bool

	closing   chan struct{} // closed by Close; releases long polls
	closeOnce sync.Once
	closeErr  error
	saverStop chan struct{}
	saverDone chan struct{}

	reqSeq    atomic.Uint64
	clockSkew atomic.Int64 // test hook: added to the wall clock, ns
}

// New validates cfg, loads PersistPath if it names an existing file and
// returns a running emulator.
func New(cfg Config) (*Emulator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		cfg:      cfg,
		log:      cfg.Logger,
		secrets:  map[string]string{},
		idPrefix: uint32(time.Now().UnixNano()>>16) ^ rand.Uint32(),
		topics:   map[string]*topic{},
		faults:   cfg.Faults,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6d71656d75)),
		closing:  make(chan struct{}),
	}
	for _, c := range cfg.Credentials {
		e.secrets[c.AccessKey] = c.SecretKey
	}
	for _, name := range cfg.Topics {
		if e.topics[name] == nil {
			e.topics[name] = newTopic(name)
		}
	}
	if cfg.PersistPath != "" {
		if err := e.load(cfg.PersistPath); err != nil {
			return nil, err
		}
		e.saverStop = make(chan struct{})
		e.saverDone = make(chan struct{})
		go e.saveLoop()
	}
	return e, nil
}

// Close releases waiting long polls, stops the periodic save and, with
// PersistPath, writes the final state. Requests after Close answer 500
// InternalError. Close is idempotent.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		close(e.closing)
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		if e.saverStop != nil {
			close(e.saverStop)
			<-e.saverDone
			e.closeErr = e.save()
		}
	})
	return e.closeErr
}

// SetFaults replaces the injected faults; an invalid value is ignored and
// logged (use ParseFaults to validate operator input first).
func (e *Emulator) SetFaults(f Faults) {
	if err := f.validate(); err != nil {
		e.log.Warn("mqemu: SetFaults ignored", "err", err)
		return
	}
	e.mu.Lock()
	e.faults = f
	e.mu.Unlock()
	e.log.Info("mqemu: faults set", "faults", f.String())
}

// Faults returns the faults currently injected.
func (e *Emulator) Faults() Faults {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults
}

// CreateTopic makes a topic exist (a no-op if it does). An invalid name
// is logged and ignored.
func (e *Emulator) CreateTopic(name string) {
	if err := validTopicName(name); err != nil {
		e.log.Warn("mqemu: CreateTopic ignored", "err", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.topics[name] == nil {
		e.topics[name] = newTopic(name)
		e.dirty = true
	}
}

// Stats counts one group's view of a topic. A group that never consumed
// sees the whole topic (it would receive every message, including those
// published before it first consumes): those messages count as Ready, or
// Scheduled for timer messages not yet due. An unknown topic gives zeros.
func (e *Emulator) Stats(topicName, groupName string) GroupStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[topicName]
	if t == nil {
		return GroupStats{Topic: topicName, Group: groupName}
	}
	now := e.now()
	if g := t.groups[groupName]; g != nil {
		return g.stats(now, e.cfg.MaxDeliveries)
	}
	s := GroupStats{Topic: topicName, Group: groupName, Published: len(t.log)}
	countTail(&s, t.log, tagFilter{}, now.UnixMilli())
	return s
}

// AllStats returns the stats of every group that has consumed, sorted by
// topic then group. Topics nobody consumed have no entry; use Stats with
// the group name to see their backlog.
func (e *Emulator) AllStats() []GroupStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var out []GroupStats
	for _, tn := range slices.Sorted(maps.Keys(e.topics)) {
		t := e.topics[tn]
		for _, gn := range slices.Sorted(maps.Keys(t.groups)) {
			out = append(out, t.groups[gn].stats(now, e.cfg.MaxDeliveries))
		}
	}
	return out
}

// TopicStats describes a topic as a whole.
type TopicStats struct {
	Topic     string `json:"topic"`
	Published int    `json:"published"`
	// HalfPending are transactional messages neither committed nor
	// rolled back; HalfExpired were dropped after 24 h unresolved.
	HalfPending int      `json:"halfPending"`
	HalfExpired int      `json:"halfExpired"`
	Groups      []string `json:"groups"`
}

// Topics describes every topic, sorted by name.
func (e *Emulator) Topics() []TopicStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var out []TopicStats
	for _, tn := range slices.Sorted(maps.Keys(e.topics)) {
		t := e.topics[tn]
		t.half.gc(now)
		out = append(out, TopicStats{
			Topic:       tn,
			Published:   len(t.log),
			HalfPending: len(t.half.list),
			HalfExpired: t.half.dropped,
			Groups:      slices.Sorted(maps.Keys(t.groups)),
		})
	}
	return out
}

// DeadLetters returns the messages group gave up on, oldest first.
func (e *Emulator) DeadLetters(topicName, groupName string) []DeadLetter {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[topicName]
	if t == nil || t.groups[groupName] == nil {
		return nil
	}
	g := t.groups[groupName]
	g.settle(e.now(), e.cfg.MaxDeliveries)
	out := slices.Clone(g.deadLetters)
	for i := range out {
		out[i].Properties = maps.Clone(out[i].Properties)
	}
	return out
}

// now is the emulator's clock: the wall clock plus a test-only offset.
func (e *Emulator) now() time.Time {
	return time.Now().Add(time.Duration(e.clockSkew.Load()))
}

// advance moves the emulator's clock forward (tests of long timers) and
// wakes long polls so they re-evaluate.
func (e *Emulator) advance(d time.Duration) {
	e.clockSkew.Add(int64(d))
	e.mu.Lock()
	for _, t := range e.topics {
		t.notify()
	}
	e.mu.Unlock()
}

// draw reports whether a fault with probability p fires. It always
// consumes one number so the sequence depends only on the requests.
func (e *Emulator) draw(p float64) bool {
	return e.rng.Float64() < p
}

func (e *Emulator) newRequestID() string {
	return fmt.Sprintf("%08X%016X", e.idPrefix, e.reqSeq.Add(1))
}

// newMessageID returns a 32-hex-digit ID like the cloud's.
func (e *Emulator) newMessageID(now time.Time) string {
	e.msgSeq++
	return fmt.Sprintf("%08X%08X%016X", e.idPrefix, uint32(now.Unix()), e.msgSeq)
}

func (e *Emulator) newHandle(m *message) string {
	e.handleSeq++
	return m.id + "-" + strconv.FormatUint(e.handleSeq, 36)
}

// apiError is an error answer in the cloud's shape.
type apiError struct {
	status  int
	code    string
	message string
}

func (a *apiError) Error() string { return a.code + ": " + a.message }

var (
	errMessageNotExist = &apiError{404, "MessageNotExist", "Message not exist."}
	errInternal        = &apiError{500, "InternalError", "Interal error."}
	errClosed          = &apiError{500, "InternalError", "Interal error: the emulator is closed."}
)

func errTopicNotExist(name string) *apiError {
	return &apiError{404, "TopicNotExist", fmt.Sprintf("The topic you provided does not exist: %s.", name)}
}

func errInvalidArgument(format string, args ...any) *apiError {
	return &apiError{400, "InvalidArgument", fmt.Sprintf(format, args...)}
}

// topicLocked finds (or auto-creates) a topic.
func (e *Emulator) topicLocked(name string) (*topic, *apiError) {
	if t := e.topics[name]; t != nil {
		return t, nil
	}
	if !e.cfg.AutoCreateTopics {
		return nil, errTopicNotExist(name)
	}
	if validTopicName(name) != nil {
		return nil, errTopicNotExist(name)
	}
	t := newTopic(name)
	e.topics[name] = t
	e.dirty = true
	return t, nil
}

// publishInput is a parsed publish request.
type publishInput struct {
	body     string
	tag      string
	props    map[string]string
	propWire string
}

type publishResult struct {
	id, bodyMD5, handle string
}

// publish validates and stores one message.
func (e *Emulator) publish(topicName string, in publishInput) (publishResult, *apiError) {
	now := e.now()
	m := &message{
		body:      in.body,
		tag:       in.tag,
		props:     in.props,
		propWire:  in.propWire,
		key:       in.props[propKeys],
		shard:     in.props[propShardingKey],
		publishMs: now.UnixMilli(),
	}
	sum := md5.Sum([]byte(in.body))
	m.bodyMD5 = strings.ToUpper(hex.EncodeToString(sum[:]))

	limit := MaxMessageBodyBytes
	if v, ok := in.props[propStartDeliver]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return publishResult{}, errInvalidArgument("The value of %s should be a millisecond timestamp.", propStartDeliver)
		}
		if ms > now.Add(MaxTimerDelay).UnixMilli() {
			return publishResult{}, errInvalidArgument("The value of %s should between now and 40 days later.", propStartDeliver)
		}
		if ms > m.publishMs {
			m.deliverMs = ms
		}
		limit = MaxTimerBodyBytes
	}
	checkSecs := 0
	if v, ok := in.props[propTransCheck]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < transCheckMinSecs || n > transCheckMaxSecs {
			return publishResult{}, errInvalidArgument("The value of %s should between %d and %d seconds.", propTransCheck, transCheckMinSecs, transCheckMaxSecs)
		}
		checkSecs = n
		limit = MaxTimerBodyBytes
	}
	if len(in.body) == 0 || len(in.body) > limit {
		return publishResult{}, errInvalidArgument("The value of MessageBody should between 1 and %d bytes.", limit)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return publishResult{}, errClosed
	}
	t, aerr := e.topicLocked(topicName)
	if aerr != nil {
		return publishResult{}, aerr
	}
	m.id = e.newMessageID(now)
	e.dirty = true
	if checkSecs > 0 {
		check := now.Add(time.Duration(checkSecs) * time.Second)
		h := &halfMsg{msg: m, handleUntil: check, checkAt: check, expireAt: now.Add(halfLifetime)}
		h.handle = e.newHandle(m)
		t.half.add(h)
		t.notify() // a trans=pop waiter may need a new deadline
		return publishResult{id: m.id, bodyMD5: m.bodyMD5, handle: h.handle}, nil
	}
	e.appendLocked(t, m)
	return publishResult{id: m.id, bodyMD5: m.bodyMD5}, nil
}

func (e *Emulator) appendLocked(t *topic, m *message) {
	m.index = len(t.log)
	t.log = append(t.log, m)
	t.notify()
}

// consumeInput is a parsed consume request.
type consumeInput struct {
	topic, group string
	n            int
	wait         time.Duration
	orderly      bool
	half         bool // trans=pop: the producer's half-message check
	filter       tagFilter
}

// consume hands out messages, long-polling up to in.wait. It answers
// MessageNotExist when nothing arrives in time, when ctx ends (the client
// left or the server is shutting down) or when the emulator closes.
func (e *Emulator) consume(ctx context.Context, in consumeInput) ([]dealt, *apiError) {
	deadline := time.Now().Add(in.wait)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, errClosed
		}
		t, aerr := e.topicLocked(in.topic)
		if aerr != nil {
			e.mu.Unlock()
			return nil, aerr
		}
		now := e.now()
		var (
			out  []dealt
			wake time.Time
		)
		if in.half {
			out = t.half.pop(now, in.n, e.newHandle)
			wake = t.half.nextDeadline()
		} else {
			g := t.groups[in.group]
			if g == nil {
				g = newGroup(t, in.group)
				g.filter = in.filter
				t.groups[in.group] = g
				e.dirty = true
			}
			dup := false
			out = g.take(now, takeOpts{
				n:             in.n,
				orderly:       in.orderly,
				filter:        in.filter,
				invisible:     e.invisible(in.orderly),
				maxDeliveries: e.cfg.MaxDeliveries,
				newHandle:     e.newHandle,
				duplicate: func() bool {
					d := e.draw(e.faults.DuplicateRate)
					dup = dup || d
					return d
				},
			})
			if dup {
				t.notify()
			}
			wake = g.nextDeadline()
		}
		if len(out) > 0 {
			e.dirty = true
		}
		changed := t.changed
		e.mu.Unlock()

		if len(out) > 0 {
			return out, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errMessageNotExist
		}
		if !wake.IsZero() {
			if d := wake.Sub(now); d < left {
				left = max(d, time.Millisecond)
			}
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			return nil, errMessageNotExist
		case <-e.closing:
			return nil, errClosed
		}
	}
}

func (e *Emulator) invisible(orderly bool) time.Duration {
	if orderly {
		return e.cfg.OrderlyInvisibleTime
	}
	return e.cfg.InvisibleTime
}

// ackMode says what a DELETE does with its handles.
type ackMode uint8

const (
	modeAck ackMode = iota
	modeCommit
	modeRollback
)

// ackFailure is one handle the cloud would report in <Errors>.
type ackFailure struct {
	handle string
	result ackResult
}

// ack acknowledges (or commits / rolls back) handles, returning the ones
// that failed in request order.
func (e *Emulator) ack(topicName, groupName string, handles []string, mode ackMode) ([]ackFailure, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errClosed
	}
	t, aerr := e.topicLocked(topicName)
	if aerr != nil {
		return nil, aerr
	}
	now := e.now()
	var failed []ackFailure
	changed := false
	if mode != modeAck {
		for _, h := range handles {
			m, res := t.half.resolve(h, now)
			if res != ackOK {
				failed = append(failed, ackFailure{h, res})
				continue
			}
			changed = true
			if mode == modeCommit {
				e.appendLocked(t, m)
			}
		}
	} else {
		g := t.groups[groupName]
		if g != nil {
			g.settle(now, e.cfg.MaxDeliveries)
		}
		expire := func() bool { return e.draw(e.faults.ExpireRate) }
		for _, h := range handles {
			res := ackInvalid
			if g != nil {
				res = g.ack(h, now, e.cfg.MaxDeliveries, expire)
			}
			if res != ackOK {
				failed = append(failed, ackFailure{h, res})
			}
		}
		// A successful ack may unblock an orderly shard and a forced
		// expiry makes a message ready at once: waiters must look again.
		changed = g != nil
	}
	if changed {
		e.dirty = true
		t.notify()
	}
	return failed, nil
}
