package mqemu

import (
	"container/heap"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The state file is JSON so an operator can read it; snapshotVersion
// changes whenever its shape does.
const snapshotVersion = 1

type snapshot struct {
	Version   int         `json:"version"`
	SavedAt   time.Time   `json:"savedAt"`
	MsgSeq    uint64      `json:"msgSeq"`
	HandleSeq uint64      `json:"handleSeq"`
	Topics    []snapTopic `json:"topics"`
}

type snapTopic struct {
	Name        string      `json:"name"`
	Messages    []snapMsg   `json:"messages"`
	Half        []snapHalf  `json:"half,omitempty"`
	HalfExpired int         `json:"halfExpired,omitempty"`
	Groups      []snapGroup `json:"groups,omitempty"`
}

type snapMsg struct {
	ID        string            `json:"id"`
	Body      string            `json:"body"`
	Tag       string            `json:"tag,omitempty"`
	Props     map[string]string `json:"props,omitempty"`
	PublishMs int64             `json:"publishMs"`
	DeliverMs int64             `json:"deliverMs,omitempty"`
}

type snapHalf struct {
	Msg           snapMsg `json:"msg"`
	Handle        string  `json:"handle"`
	HandleUntilMs int64   `json:"handleUntilMs"`
	CheckAtMs     int64   `json:"checkAtMs"`
	ExpireAtMs    int64   `json:"expireAtMs"`
	FirstMs       int64   `json:"firstMs,omitempty"`
	Consumed      int     `json:"consumed,omitempty"`
}

type snapGroup struct {
	Name        string       `json:"name"`
	Filter      string       `json:"filter,omitempty"`
	Next        int          `json:"next"`
	Acked       int          `json:"acked"`
	Dead        int          `json:"dead"`
	Filtered    int          `json:"filtered"`
	Delivered   int          `json:"delivered"`
	Records     []snapRecord `json:"records,omitempty"`
	DeadLetters []DeadLetter `json:"deadLetters,omitempty"`
}

type snapRecord struct {
	Index    int            `json:"index"`
	Consumed int            `json:"consumed"`
	FirstMs  int64          `json:"firstMs,omitempty"`
	InReady  bool           `json:"inReady,omitempty"`
	Live     []snapDelivery `json:"live,omitempty"`
	Stale    []string       `json:"stale,omitempty"`
}

type snapDelivery struct {
	Handle      string `json:"handle"`
	VisibleAtMs int64  `json:"visibleAtMs"`
}

func snapMessage(m *message) snapMsg {
	return snapMsg{ID: m.id, Body: m.body, Tag: m.tag, Props: m.props, PublishMs: m.publishMs, DeliverMs: m.deliverMs}
}

func (s snapMsg) message() *message {
	props := s.Props
	if props == nil {
		props = map[string]string{}
	}
	sum := md5.Sum([]byte(s.Body))
	return &message{
		id:        s.ID,
		body:      s.Body,
		bodyMD5:   strings.ToUpper(hex.EncodeToString(sum[:])),
		tag:       s.Tag,
		props:     props,
		propWire:  renderProperties(props),
		key:       props[propKeys],
		shard:     props[propShardingKey],
		publishMs: s.PublishMs,
		deliverMs: s.DeliverMs,
	}
}

// snapshotLocked copies the state; strings are shared, not copied.
func (e *Emulator) snapshotLocked() snapshot {
	s := snapshot{Version: snapshotVersion, SavedAt: time.Now().UTC(), MsgSeq: e.msgSeq, HandleSeq: e.handleSeq}
	for _, t := range e.topics {
		st := snapTopic{Name: t.name, Messages: make([]snapMsg, len(t.log)), HalfExpired: t.half.dropped}
		for i, m := range t.log {
			st.Messages[i] = snapMessage(m)
		}
		for _, h := range t.half.list {
			st.Half = append(st.Half, snapHalf{
				Msg: snapMessage(h.msg), Handle: h.handle, HandleUntilMs: h.handleUntil.UnixMilli(),
				CheckAtMs: h.checkAt.UnixMilli(), ExpireAtMs: h.expireAt.UnixMilli(), FirstMs: h.firstMs, Consumed: h.consumed,
			})
		}
		for _, g := range t.groups {
			sg := snapGroup{
				Name: g.name, Filter: g.filter.raw, Next: g.next, Acked: g.acked, Dead: g.dead,
				Filtered: g.filtered, Delivered: g.delivered, DeadLetters: slices.Clone(g.deadLetters),
			}
			for _, r := range g.active {
				sr := snapRecord{Index: r.msg.index, Consumed: r.consumed, FirstMs: r.firstMs, InReady: r.inReady, Stale: slices.Clone(r.stale)}
				for _, d := range r.live {
					sr.Live = append(sr.Live, snapDelivery{Handle: d.handle, VisibleAtMs: d.visibleAt.UnixMilli()})
				}
				sg.Records = append(sg.Records, sr)
			}
			st.Groups = append(st.Groups, sg)
		}
		s.Topics = append(s.Topics, st)
	}
	return s
}

// save writes the state atomically: a temp file in the same directory,
// synced, then renamed over PersistPath.
func (e *Emulator) save() error {
	e.mu.Lock()
	snap := e.snapshotLocked()
	e.dirty = false
	e.mu.Unlock()
	err := writeSnapshot(e.cfg.PersistPath, snap)
	if err != nil {
		e.mu.Lock()
		e.dirty = true // try again next time
		e.mu.Unlock()
	}
	return err
}

func writeSnapshot(path string, snap snapshot) (err error) {
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("mqemu: encode state: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("mqemu: save state: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name()) // best effort; the error that matters is returned
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("mqemu: save state: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("mqemu: save state: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("mqemu: save state: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("mqemu: save state: %w", err)
	}
	return nil
}

func (e *Emulator) saveLoop() {
	defer close(e.saverDone)
	tick := time.NewTicker(e.cfg.PersistInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.saverStop:
			return
		case <-tick.C:
			e.mu.Lock()
			dirty := e.dirty
			e.mu.Unlock()
			if !dirty {
				continue
			}
			if err := e.save(); err != nil {
				e.log.Warn("mqemu: periodic save failed", "err", err)
			}
		}
	}
}

// load restores the state saved at path; a missing file is a fresh start.
func (e *Emulator) load(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mqemu: load state: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("mqemu: load state %s: %w", path, err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("mqemu: load state %s: version %d, want %d (delete the file to start fresh)", path, snap.Version, snapshotVersion)
	}
	e.msgSeq, e.handleSeq = snap.MsgSeq, snap.HandleSeq
	for _, st := range snap.Topics {
		if err := validTopicName(st.Name); err != nil {
			return fmt.Errorf("mqemu: load state %s: %w", path, err)
		}
		t := newTopic(st.Name)
		for _, sm := range st.Messages {
			m := sm.message()
			m.index = len(t.log)
			t.log = append(t.log, m)
		}
		t.half.dropped = st.HalfExpired
		for _, sh := range st.Half {
			t.half.add(&halfMsg{
				msg: sh.Msg.message(), handle: sh.Handle, handleUntil: time.UnixMilli(sh.HandleUntilMs),
				checkAt: time.UnixMilli(sh.CheckAtMs), expireAt: time.UnixMilli(sh.ExpireAtMs), firstMs: sh.FirstMs, consumed: sh.Consumed,
			})
		}
		for _, sg := range st.Groups {
			g, err := restoreGroup(t, sg)
			if err != nil {
				return fmt.Errorf("mqemu: load state %s: topic %s: %w", path, st.Name, err)
			}
			t.groups[g.name] = g
		}
		e.topics[t.name] = t
	}
	e.log.Info("mqemu: state loaded", "path", path, "topics", len(snap.Topics), "savedAt", snap.SavedAt)
	return nil
}

func restoreGroup(t *topic, sg snapGroup) (*group, error) {
	if sg.Name == "" || sg.Next < 0 || sg.Next > len(t.log) {
		return nil, fmt.Errorf("group %q: bad cursor %d", sg.Name, sg.Next)
	}
	g := newGroup(t, sg.Name)
	g.filter = parseTagFilter(sg.Filter)
	g.next = sg.Next
	g.acked, g.dead, g.filtered, g.delivered = sg.Acked, sg.Dead, sg.Filtered, sg.Delivered
	g.deadLetters = sg.DeadLetters
	for _, sr := range sg.Records {
		if sr.Index < 0 || sr.Index >= g.next || g.active[sr.Index] != nil {
			return nil, fmt.Errorf("group %q: bad record index %d", sg.Name, sr.Index)
		}
		r := &record{msg: t.log[sr.Index], consumed: sr.Consumed, firstMs: sr.FirstMs, stale: sr.Stale}
		g.active[sr.Index] = r
		for _, h := range sr.Stale {
			g.handles[h] = &delivery{rec: r, handle: h}
		}
		for _, sd := range sr.Live {
			d := &delivery{rec: r, handle: sd.Handle, visibleAt: time.UnixMilli(sd.VisibleAtMs), live: true}
			r.live = append(r.live, d)
			g.handles[d.handle] = d
			heap.Push(&g.events, event{at: d.visibleAt, d: d})
		}
		if len(r.live) > 0 {
			r.holdsShard = true
			g.shardBusy[r.msg.shard]++
		}
		switch {
		case sr.InReady:
			g.pushReady(r)
		case len(r.live) > 0:
		case r.msg.deliverMs > 0: // waiting for its timer; settle makes it ready when due
			heap.Push(&g.events, event{at: time.UnixMilli(r.msg.deliverMs), rec: r})
		default:
			g.pushReady(r)
		}
	}
	return g, nil
}
