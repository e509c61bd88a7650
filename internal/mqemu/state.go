package mqemu

import (
	"container/heap"
	"slices"
	"strings"
	"time"
)

// This file is the broker state machine. Everything in it runs with
// Emulator.mu held. Messages are immutable once published; per-group
// progress lives in records owned by the group.
//
// A group walks the topic log with a cursor (next). When the cursor passes
// a message, the group's tag filter either drops it (Filtered) or it gets a
// record. A record is in exactly one of:
//
//	waiting for its timer -> ready -> in flight -> ready -> ... -> acked | dead
//
// "ready" records sit in a min-heap by log position, so older messages go
// first and per-shard order holds for orderly consumers. Everything with a
// deadline (in-flight deliveries, timer messages) has an entry in a second
// min-heap by time; settle() applies the deadlines that have passed. Both
// heaps are lazy: a stale entry is recognised and dropped when popped.

// message is one published message.
type message struct {
	index     int // position in the topic log
	id        string
	body      string
	bodyMD5   string // uppercase hex, as the cloud reports it
	tag       string
	props     map[string]string // as published, reserved keys included
	propWire  string            // props rendered for the consume response
	key       string
	shard     string
	publishMs int64
	deliverMs int64 // StartDeliverTime; 0 = deliver at once
}

// topic is one topic: its log, its consumer groups and its half
// (transactional, not yet committed) messages.
type topic struct {
	name    string
	log     []*message
	groups  map[string]*group
	half    *halfStore
	changed chan struct{} // closed and replaced whenever a waiter may now succeed
}

func newTopic(name string) *topic {
	return &topic{name: name, groups: map[string]*group{}, half: newHalfStore(), changed: make(chan struct{})}
}

// notify wakes every long poll waiting on the topic.
func (t *topic) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// tagFilter is a consume request's tag expression: "" or "*" match all,
// otherwise "A||B" matches tags A and B.
type tagFilter struct {
	raw  string
	tags []string // nil = all
}

func parseTagFilter(raw string) tagFilter {
	f := tagFilter{raw: raw}
	if strings.TrimSpace(raw) == "" || strings.TrimSpace(raw) == "*" {
		return f
	}
	for t := range strings.SplitSeq(raw, "||") {
		if t = strings.TrimSpace(t); t != "" {
			f.tags = append(f.tags, t)
		}
	}
	return f
}

func (f tagFilter) match(tag string) bool {
	return f.tags == nil || slices.Contains(f.tags, tag)
}

// record is a group's progress on one message it still owes or has
// settled.
type record struct {
	msg        *message
	consumed   int   // deliveries so far (ConsumedTimes)
	firstMs    int64 // first delivery, ms epoch; 0 = never delivered
	live       []*delivery
	stale      []string // handles whose invisibility ended; they answer "expired" until the next delivery
	inReady    bool
	readySeq   uint64
	holdsShard bool // counted in group.shardBusy
	done       bool // acked or dead-lettered
}

// delivery is one hand-out of a record with its receipt handle.
type delivery struct {
	rec       *record
	handle    string
	visibleAt time.Time // end of invisibility (NextConsumeTime)
	live      bool      // false once acked, expired or superseded
}

// group is one consumer group's view of a topic.
type group struct {
	topic     *topic
	name      string
	filter    tagFilter // the subscription: last filter a consume request used
	next      int       // first log position the group has not examined
	active    map[int]*record
	ready     readyHeap
	events    eventHeap
	handles   map[string]*delivery
	shardBusy map[string]int // shard -> records of it in flight
	// dups are injected duplicate deliveries still owed, served first by
	// the next consume. They are owed even if the original is acked
	// meanwhile, as a cloud duplicate would be.
	dups []*record

	acked, dead, filtered, delivered int
	deadLetters                      []DeadLetter

	tail tailIndex // stats' count of the log past next
}

// tailIndex lets stats count the messages a group has not examined yet
// without walking them: benchmarks and tests poll stats every few
// milliseconds while the group is tens of thousands of messages behind,
// and a walk under the emulator's lock took a fifth of a benchmark's CPU
// and held up every consume and ack meanwhile. The log only grows, so the
// index is extended, never rebuilt, until the group's filter changes.
type tailIndex struct {
	filter  string  // the raw filter the index counts for
	matches []int32 // matches[i]: messages of log[:i] the filter matches
	timed   []int   // log positions of matching messages with a delivery time
}

func newGroup(t *topic, name string) *group {
	return &group{
		topic:     t,
		name:      name,
		active:    map[int]*record{},
		handles:   map[string]*delivery{},
		shardBusy: map[string]int{},
	}
}

// DeadLetter is a message a group gave up on after MaxDeliveries
// deliveries without an ack. Dead letters are kept for the emulator's
// lifetime (and persisted).
type DeadLetter struct {
	Topic            string            `json:"topic"`
	Group            string            `json:"group"`
	MessageID        string            `json:"messageId"`
	Key              string            `json:"key,omitempty"`
	Tag              string            `json:"tag,omitempty"`
	ShardingKey      string            `json:"shardingKey,omitempty"`
	Body             string            `json:"body"`
	Properties       map[string]string `json:"properties,omitempty"` // user properties, reserved keys removed
	PublishTime      time.Time         `json:"publishTime"`
	FirstConsumeTime time.Time         `json:"firstConsumeTime"`
	DeadLetteredAt   time.Time         `json:"deadLetteredAt"`
	ConsumedTimes    int               `json:"consumedTimes"`
}

// pushReady makes r available to the next consume.
func (g *group) pushReady(r *record) {
	r.readySeq++
	r.inReady = true
	heap.Push(&g.ready, readyItem{rec: r, seq: r.readySeq})
}

// popReady returns the oldest ready record, or nil.
func (g *group) popReady() *record {
	for g.ready.Len() > 0 {
		it := heap.Pop(&g.ready).(readyItem)
		r := it.rec
		if !r.inReady || r.readySeq != it.seq || r.done {
			continue
		}
		r.inReady = false
		return r
	}
	return nil
}

func (g *group) releaseShard(r *record) {
	if !r.holdsShard {
		return
	}
	r.holdsShard = false
	if g.shardBusy[r.msg.shard]--; g.shardBusy[r.msg.shard] <= 0 {
		delete(g.shardBusy, r.msg.shard)
	}
}

func removeDelivery(ds []*delivery, d *delivery) []*delivery {
	if i := slices.Index(ds, d); i >= 0 {
		return slices.Delete(ds, i, i+1)
	}
	return ds
}

// settle applies every deadline that has passed by now: expired deliveries
// make their message visible again (or dead-letter it), due timer messages
// become ready. It reports whether anything became ready.
func (g *group) settle(now time.Time, maxDeliveries int) bool {
	woke := false
	for g.events.Len() > 0 && !g.events[0].at.After(now) {
		ev := heap.Pop(&g.events).(event)
		if ev.d == nil { // a timer message falls due
			r := ev.rec
			if !r.done && !r.inReady && len(r.live) == 0 {
				g.pushReady(r)
				woke = true
			}
			continue
		}
		if ev.d.live {
			woke = g.expire(ev.d, now, maxDeliveries) || woke
		} else if ev.d.rec.done {
			delete(g.handles, ev.d.handle)
		}
	}
	return woke
}

// expire ends d's invisibility. The handle stays answerable ("expired")
// until the message is delivered again. It reports whether the message
// became ready.
func (g *group) expire(d *delivery, now time.Time, maxDeliveries int) bool {
	d.live = false
	r := d.rec
	r.live = removeDelivery(r.live, d)
	if r.done {
		delete(g.handles, d.handle)
		return false
	}
	r.stale = append(r.stale, d.handle)
	if len(r.live) > 0 { // a duplicate is still out
		return false
	}
	g.releaseShard(r)
	if r.inReady {
		return false
	}
	if r.consumed >= maxDeliveries {
		g.deadLetter(r, now)
		return false
	}
	g.pushReady(r)
	return true
}

func (g *group) deadLetter(r *record, now time.Time) {
	g.finish(r)
	g.dead++
	m := r.msg
	dl := DeadLetter{
		Topic:          g.topic.name,
		Group:          g.name,
		MessageID:      m.id,
		Key:            m.key,
		Tag:            m.tag,
		ShardingKey:    m.shard,
		Body:           m.body,
		Properties:     userProperties(m.props),
		PublishTime:    time.UnixMilli(m.publishMs).UTC(),
		DeadLetteredAt: now.UTC(),
		ConsumedTimes:  r.consumed,
	}
	if r.firstMs > 0 {
		dl.FirstConsumeTime = time.UnixMilli(r.firstMs).UTC()
	}
	g.deadLetters = append(g.deadLetters, dl)
}

// finish makes r terminal: it leaves the active set and its expired
// handles stop answering.
func (g *group) finish(r *record) {
	r.done = true
	delete(g.active, r.msg.index)
	g.releaseShard(r)
	for _, h := range r.stale {
		delete(g.handles, h)
	}
	r.stale = nil
}

// takeOpts is what one consume request asks for.
type takeOpts struct {
	n             int
	orderly       bool
	filter        tagFilter
	invisible     time.Duration
	maxDeliveries int
	newHandle     func(*message) string
	duplicate     func() bool // draws the duplicate-delivery fault
}

// dealt is a delivery rendered for the response (copied under the lock).
type dealt struct {
	msg      *message
	handle   string
	firstMs  int64
	nextMs   int64
	consumed int
}

// take hands out up to o.n messages. Orderly requests skip shards that
// still have messages in flight, except those handed out in this batch.
func (g *group) take(now time.Time, o takeOpts) []dealt {
	g.settle(now, o.maxDeliveries)
	if o.filter.raw != g.filter.raw {
		g.filter = o.filter
	}
	var (
		out      []dealt
		deferred []*record
		taken    map[string]bool
	)
	if o.orderly {
		taken = map[string]bool{}
	} else {
		for len(out) < o.n && len(g.dups) > 0 {
			r := g.dups[0]
			g.dups[0] = nil
			g.dups = g.dups[1:]
			out = append(out, g.deliver(r, now, o))
		}
	}
	firstOriginal := len(out) // duplicates are not duplicated again
	// blocked reports whether an orderly batch must hold r back.
	blocked := func(r *record) bool {
		if !o.orderly {
			return false
		}
		s := r.msg.shard
		if taken[s] {
			return false
		}
		if g.shardBusy[s] > 0 {
			return true
		}
		taken[s] = true
		return false
	}
	for len(out) < o.n {
		r := g.popReady()
		if r == nil {
			break
		}
		if blocked(r) {
			deferred = append(deferred, r)
			continue
		}
		out = append(out, g.deliver(r, now, o))
	}
	nowMs := now.UnixMilli()
	for len(out) < o.n && g.next < len(g.topic.log) {
		m := g.topic.log[g.next]
		g.next++
		if !g.filter.match(m.tag) {
			g.filtered++
			continue
		}
		r := &record{msg: m}
		g.active[m.index] = r
		if m.deliverMs > nowMs {
			heap.Push(&g.events, event{at: time.UnixMilli(m.deliverMs), rec: r})
			continue
		}
		if blocked(r) {
			deferred = append(deferred, r)
			continue
		}
		out = append(out, g.deliver(r, now, o))
	}
	for _, r := range deferred {
		g.pushReady(r)
	}
	if !o.orderly && o.duplicate != nil {
		for _, d := range out[firstOriginal:] {
			if o.duplicate() {
				g.dups = append(g.dups, g.active[d.msg.index])
			}
		}
	}
	return out
}

func (g *group) deliver(r *record, now time.Time, o takeOpts) dealt {
	for _, h := range r.stale { // an older handle stops working once redelivered
		delete(g.handles, h)
	}
	r.stale = nil
	r.inReady = false // a duplicate delivered while the record was queued counts as its redelivery
	r.consumed++
	if r.firstMs == 0 {
		r.firstMs = now.UnixMilli()
	}
	d := &delivery{rec: r, handle: o.newHandle(r.msg), visibleAt: now.Add(o.invisible), live: true}
	r.live = append(r.live, d)
	g.handles[d.handle] = d
	heap.Push(&g.events, event{at: d.visibleAt, d: d})
	if !r.holdsShard && !r.done { // a duplicate of an acked message holds nothing
		r.holdsShard = true
		g.shardBusy[r.msg.shard]++
	}
	g.delivered++
	return dealt{msg: r.msg, handle: d.handle, firstMs: r.firstMs, nextMs: d.visibleAt.UnixMilli(), consumed: r.consumed}
}

// ackResult is the outcome for one receipt handle.
type ackResult uint8

const (
	ackOK ackResult = iota
	ackInvalid
	ackExpired
)

// ack settles one handle. forceExpire draws the expiry fault; it is only
// consulted for a handle that would otherwise succeed.
func (g *group) ack(h string, now time.Time, maxDeliveries int, forceExpire func() bool) ackResult {
	d, ok := g.handles[h]
	if !ok {
		return ackInvalid
	}
	if !d.live || !now.Before(d.visibleAt) {
		return ackExpired
	}
	if forceExpire != nil && forceExpire() {
		g.expire(d, now, maxDeliveries)
		return ackExpired
	}
	d.live = false
	delete(g.handles, h)
	r := d.rec
	r.live = removeDelivery(r.live, d)
	if !r.done { // an ack of a duplicate's second handle is a no-op success
		g.finish(r)
		g.acked++
	}
	return ackOK
}

// nextDeadline is the earliest pending deadline (zero if none): a long
// poll must look again then even if nothing is published.
func (g *group) nextDeadline() time.Time {
	if g.events.Len() == 0 {
		return time.Time{}
	}
	return g.events[0].at
}

// GroupStats counts one consumer group's view of a topic. Every message of
// the topic is in exactly one of Ready, Scheduled, InFlight, Acked,
// DeadLettered and Filtered, so they sum to Published.
type GroupStats struct {
	Topic string `json:"topic"`
	Group string `json:"group"`
	// Published is the number of messages in the topic (committed
	// transactional messages included; half messages not).
	Published int `json:"published"`
	// Ready messages are visible now: never delivered, due for
	// redelivery, or a timer message whose time has come.
	Ready int `json:"ready"`
	// Scheduled are timer messages whose StartDeliverTime is still ahead;
	// they are not counted as Ready.
	Scheduled int `json:"scheduled"`
	// InFlight messages were delivered and are invisible, unacked.
	InFlight int `json:"inFlight"`
	// Acked messages were acknowledged (each counted once, duplicates
	// or not).
	Acked int `json:"acked"`
	// DeadLettered messages ran out of deliveries; see DeadLetters.
	DeadLettered int `json:"deadLettered"`
	// Filtered messages did not match the group's tag filter (the last
	// one a consume request used) and will never be delivered to it.
	Filtered int `json:"filtered"`
	// Delivered counts deliveries, redeliveries and duplicates included.
	// An injected duplicate is not counted anywhere else: it is owed to the
	// group even after the original's ack, so it never appears as Ready.
	Delivered int `json:"delivered"`
}

// stats counts g's view at now. It settles first so expired deliveries
// count as Ready (or DeadLettered), not InFlight.
func (g *group) stats(now time.Time, maxDeliveries int) GroupStats {
	g.settle(now, maxDeliveries)
	s := GroupStats{
		Topic:        g.topic.name,
		Group:        g.name,
		Published:    len(g.topic.log),
		Acked:        g.acked,
		DeadLettered: g.dead,
		Filtered:     g.filtered,
		Delivered:    g.delivered,
	}
	nowMs := now.UnixMilli()
	for _, r := range g.active {
		switch {
		case len(r.live) > 0:
			s.InFlight++
		case r.inReady || r.msg.deliverMs <= nowMs:
			s.Ready++
		default:
			s.Scheduled++
		}
	}
	g.countTail(&s, nowMs)
	return s
}

// countTail classifies, like countTail the function, the messages past
// g.next, in time proportional to the messages published since the last
// call plus the timed ones still in the tail.
func (g *group) countTail(s *GroupStats, nowMs int64) {
	ix := &g.tail
	if ix.matches == nil || ix.filter != g.filter.raw {
		*ix = tailIndex{filter: g.filter.raw, matches: []int32{0}}
	}
	log := g.topic.log
	for i := len(ix.matches) - 1; i < len(log); i++ {
		n := ix.matches[i]
		if g.filter.match(log[i].tag) {
			n++
			if log[i].deliverMs > 0 {
				ix.timed = append(ix.timed, i)
			}
		}
		ix.matches = append(ix.matches, n)
	}
	matching := int(ix.matches[len(log)] - ix.matches[g.next])
	s.Filtered += len(log) - g.next - matching
	scheduled := 0
	from, _ := slices.BinarySearch(ix.timed, g.next)
	for _, i := range ix.timed[from:] {
		if log[i].deliverMs > nowMs {
			scheduled++
		}
	}
	s.Scheduled += scheduled
	s.Ready += matching - scheduled
}

// countTail classifies messages a group has not examined yet.
func countTail(s *GroupStats, tail []*message, f tagFilter, nowMs int64) {
	for _, m := range tail {
		switch {
		case !f.match(m.tag):
			s.Filtered++
		case m.deliverMs > nowMs:
			s.Scheduled++
		default:
			s.Ready++
		}
	}
}

type readyItem struct {
	rec *record
	seq uint64
}

// readyHeap orders ready records by log position.
type readyHeap []readyItem

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].rec.msg.index < h[j].rec.msg.index }
func (h readyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(readyItem)) }
func (h *readyHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = readyItem{}
	*h = old[:len(old)-1]
	return it
}

// event is a deadline: a delivery's invisibility ends (d set) or a timer
// message falls due (rec set).
type event struct {
	at  time.Time
	d   *delivery
	rec *record
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	ev := old[len(old)-1]
	old[len(old)-1] = event{}
	*h = old[:len(old)-1]
	return ev
}
