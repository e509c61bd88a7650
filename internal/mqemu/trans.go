package mqemu

import (
	"slices"
	"time"
)

// Transactional ("half") messages: published with __TransCheckT, invisible
// to consumers until committed. The publish answer carries a handle that
// commits or rolls back until the first check time; after that the
// producer's ConsumeHalfMessage (trans=pop) re-offers the message with a
// fresh handle every halfCheckInterval until it is resolved or
// halfLifetime passes, as the cloud does.
const (
	halfCheckInterval = 10 * time.Second
	halfLifetime      = 24 * time.Hour
)

type halfMsg struct {
	msg         *message // index is assigned on commit
	handle      string
	handleUntil time.Time
	checkAt     time.Time
	consumed    int
	firstMs     int64
	expireAt    time.Time
}

type halfStore struct {
	list     []*halfMsg // publish order
	byHandle map[string]*halfMsg
	dropped  int // expired unresolved
}

func newHalfStore() *halfStore { return &halfStore{byHandle: map[string]*halfMsg{}} }

func (s *halfStore) add(h *halfMsg) {
	s.list = append(s.list, h)
	s.byHandle[h.handle] = h
}

func (s *halfStore) remove(h *halfMsg) {
	delete(s.byHandle, h.handle)
	if i := slices.Index(s.list, h); i >= 0 {
		s.list = slices.Delete(s.list, i, i+1)
	}
}

// gc drops half messages nobody resolved within halfLifetime.
func (s *halfStore) gc(now time.Time) {
	for _, h := range slices.Clone(s.list) {
		if !now.Before(h.expireAt) {
			s.remove(h)
			s.dropped++
		}
	}
}

// pop re-offers up to n half messages whose check time has come, each
// with a new handle; the previous handle stops working.
func (s *halfStore) pop(now time.Time, n int, newHandle func(*message) string) []dealt {
	s.gc(now)
	var out []dealt
	for _, h := range s.list {
		if len(out) == n {
			break
		}
		if now.Before(h.checkAt) {
			continue
		}
		delete(s.byHandle, h.handle)
		h.handle = newHandle(h.msg)
		h.handleUntil = now.Add(halfCheckInterval)
		h.checkAt = h.handleUntil
		h.consumed++
		if h.firstMs == 0 {
			h.firstMs = now.UnixMilli()
		}
		s.byHandle[h.handle] = h
		out = append(out, dealt{msg: h.msg, handle: h.handle, firstMs: h.firstMs, nextMs: h.checkAt.UnixMilli(), consumed: h.consumed})
	}
	return out
}

// resolve finds the half message a commit or rollback names and removes
// it when the handle is current.
func (s *halfStore) resolve(handle string, now time.Time) (*message, ackResult) {
	h, ok := s.byHandle[handle]
	if !ok {
		return nil, ackInvalid
	}
	if !now.Before(h.handleUntil) {
		return nil, ackExpired
	}
	s.remove(h)
	return h.msg, ackOK
}

// nextDeadline is when the next half message becomes poppable.
func (s *halfStore) nextDeadline() time.Time {
	var t time.Time
	for _, h := range s.list {
		if t.IsZero() || h.checkAt.Before(t) {
			t = h.checkAt
		}
	}
	return t
}
