package syncevent

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// The body is parsed in one pass over its bytes into a flat list of tokens
// that point into the body, not into a map[string]any or a tree of copied
// strings:
//   - duplicate field names can be rejected (a map would keep the last one
//     silently) and number literals are kept exactly as sent;
//   - the memory a body costs is bounded: one 12-byte token per JSON value
//     (at most Limits.MaxValues), held in fixed-size chunks so growing never
//     copies; strings are decoded only when they are read. encoding/json's
//     Valid + Unmarshal + Decoder, used before, cost about 90 times the body.
//
// Strings are checked as they are read: invalid UTF-8, a lone surrogate
// escape and U+FFFD (what invalid bytes become on the way through the HTTP
// API) are refused instead of being replaced, so no stored record silently
// differs from what the device sent.

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// tok is one JSON value (or object field name) in document order. A
// container is followed by its contents; an object's contents alternate
// field name and value.
type tok struct {
	kind kind
	// esc: a string has escapes, so its text must be decoded from the body.
	esc bool
	// off, n: where a scalar's text (a string's without the quotes) is in
	// the body; for a container, n is the number of tokens of its subtree,
	// itself included, so a walker can skip it.
	off, n uint32
}

// tokChunk tokens per chunk: 48 KiB.
const tokChunkBits = 12

// doc is a parsed body.
type doc struct {
	body   []byte
	chunks [][]tok
	ntok   uint32
	keys   []uint32 // scratch: field-name tokens of the objects being sorted
	text1  []byte   // scratch: decoded strings
	text2  []byte
}

func (d *doc) tok(i uint32) *tok {
	return &d.chunks[i>>tokChunkBits][i&(1<<tokChunkBits-1)]
}

// raw is a string's text as sent, escapes included.
func (d *doc) raw(t *tok) []byte { return d.body[t.off : t.off+t.n] }

// text returns a scalar's text, decoded into buf when it has escapes.
func (d *doc) text(t *tok, buf *[]byte) []byte {
	if !t.esc {
		return d.raw(t)
	}
	*buf = unescape((*buf)[:0], d.raw(t))
	return *buf
}

// compareKeys orders field names by their decoded bytes.
func (d *doc) compareKeys(a, b uint32) int {
	return bytes.Compare(d.text(d.tok(a), &d.text1), d.text(d.tok(b), &d.text2))
}

// sortedKeys appends the field-name tokens of the object at i to d.keys,
// sorted by name, and returns where they start. The caller truncates
// d.keys back to that start when done.
func (d *doc) sortedKeys(i uint32) int {
	start := len(d.keys)
	for k, end := i+1, i+d.tok(i).n; k < end; k += 1 + d.subtree(k+1) {
		d.keys = append(d.keys, k)
	}
	slices.SortStableFunc(d.keys[start:], d.compareKeys)
	return start
}

// node is a handle on one value, for the field checks in syncevent.go.
type node struct {
	kind kind
	text string // scalar text, copied on access
	d    *doc
	i    uint32
}

func (d *doc) node(i uint32) *node {
	t := d.tok(i)
	n := &node{kind: t.kind, d: d, i: i}
	switch t.kind {
	case kindBool, kindNumber, kindString:
		var buf []byte
		n.text = string(d.text(t, &buf))
	}
	return n
}

// member returns the value of an object's field, or nil when absent. A
// linear scan: only the top level and patientData are looked into.
func (n *node) member(key string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	d := n.d
	for k, end := n.i+1, n.i+d.tok(n.i).n; k < end; k += 1 + d.subtree(k+1) {
		if string(d.text(d.tok(k), &d.text1)) == key {
			return d.node(k + 1)
		}
	}
	return nil
}

// parser reads one body.
type parser struct {
	doc
	pos int
	lim Limits
}

func decode(body []byte, lim Limits) (*node, error) {
	if len(body) == 0 {
		return nil, invalid(ReasonBadJSON, "body: empty")
	}
	// Every value takes at least one byte and siblings are separated by at
	// least one, so a small valid body never needs more than len/2+1
	// tokens: its first chunk is sized to that instead of a whole chunk.
	p := &parser{doc: doc{body: body}, lim: lim}
	p.chunks = [][]tok{make([]tok, min(len(body)/2+2, 1<<tokChunkBits))}
	err := p.value(0)
	if err == nil {
		p.space()
		if p.pos != len(body) {
			err = invalid(ReasonBadJSON, "body: data after the JSON value at byte offset %d", p.pos)
		}
	}
	if err != nil {
		// Invalid bytes anywhere win over whatever else is wrong, as they
		// did when the body was checked with utf8.Valid first; checked
		// only here so a good body is read once.
		if !utf8.Valid(body) {
			return nil, invalid(ReasonInvalidUTF8, "body: not valid UTF-8")
		}
		return nil, err
	}
	return p.node(0), nil
}

func (p *parser) syntax() error {
	// Only the offset: the character there may be patient data.
	return invalid(ReasonBadJSON, "body: invalid JSON at byte offset %d", p.pos)
}

func (p *parser) space() {
	for p.pos < len(p.body) {
		switch p.body[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) push(t tok) (uint32, error) {
	if int(p.ntok) >= p.lim.MaxValues {
		return 0, invalid(ReasonBadJSON, "body: more than %d JSON values", p.lim.MaxValues)
	}
	i := p.ntok
	switch c := int(i >> tokChunkBits); {
	case c == len(p.chunks):
		p.chunks = append(p.chunks, make([]tok, 1<<tokChunkBits))
	case int(i&(1<<tokChunkBits-1)) == len(p.chunks[c]):
		// Only invalid JSON outgrows the small first chunk.
		full := make([]tok, 1<<tokChunkBits)
		copy(full, p.chunks[c])
		p.chunks[c] = full
	}
	*p.tok(i) = t
	p.ntok++
	return i, nil
}

func (p *parser) value(depth int) error {
	p.space()
	if p.pos >= len(p.body) {
		return p.syntax()
	}
	switch c := p.body[p.pos]; {
	case c == '{' || c == '[':
		if depth >= p.lim.MaxDepth {
			return invalid(ReasonBadJSON, "body: nested deeper than %d levels", p.lim.MaxDepth)
		}
		if c == '{' {
			return p.object(depth)
		}
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == 't':
		return p.literal("true", kindBool)
	case c == 'f':
		return p.literal("false", kindBool)
	case c == 'n':
		return p.literal("null", kindNull)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return p.syntax()
}

func (p *parser) literal(word string, k kind) error {
	if !bytes.HasPrefix(p.body[p.pos:], []byte(word)) {
		return p.syntax()
	}
	_, err := p.push(tok{kind: k, off: uint32(p.pos), n: uint32(len(word))})
	p.pos += len(word)
	return err
}

func (p *parser) digits() int {
	start := p.pos
	for p.pos < len(p.body) && p.body[p.pos] >= '0' && p.body[p.pos] <= '9' {
		p.pos++
	}
	return p.pos - start
}

// number checks RFC 8259's grammar; the literal is kept as sent.
func (p *parser) number() error {
	start := p.pos
	if p.body[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.body) && p.body[p.pos] == '0':
		p.pos++
	case p.digits() == 0:
		return p.syntax()
	}
	if p.pos < len(p.body) && p.body[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return p.syntax()
		}
	}
	if p.pos < len(p.body) && (p.body[p.pos] == 'e' || p.body[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.body) && (p.body[p.pos] == '+' || p.body[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return p.syntax()
		}
	}
	_, err := p.push(tok{kind: kindNumber, off: uint32(start), n: uint32(p.pos - start)})
	return err
}

func (p *parser) array(depth int) error {
	self, err := p.push(tok{kind: kindArray})
	if err != nil {
		return err
	}
	p.pos++ // '['
	p.space()
	if p.pos < len(p.body) && p.body[p.pos] == ']' {
		p.pos++
		p.tok(self).n = 1
		return nil
	}
	for count := 1; ; count++ {
		if count > p.lim.MaxContainer {
			return invalid(ReasonBadJSON, "body: array of more than %d elements", p.lim.MaxContainer)
		}
		if err := p.value(depth + 1); err != nil {
			return err
		}
		p.space()
		if p.pos >= len(p.body) {
			return p.syntax()
		}
		switch p.body[p.pos] {
		case ',':
			p.pos++
			continue
		case ']':
			p.pos++
			p.tok(self).n = p.ntok - self
			return nil
		}
		return p.syntax()
	}
}

func (p *parser) object(depth int) error {
	self, err := p.push(tok{kind: kindObject})
	if err != nil {
		return err
	}
	p.pos++ // '{'
	p.space()
	count := 0
	if p.pos < len(p.body) && p.body[p.pos] == '}' {
		p.pos++
	} else {
		for {
			if count++; count > p.lim.MaxContainer {
				return invalid(ReasonBadJSON, "body: object of more than %d fields", p.lim.MaxContainer)
			}
			p.space()
			if p.pos >= len(p.body) || p.body[p.pos] != '"' {
				return p.syntax()
			}
			if err := p.str(); err != nil {
				return err
			}
			p.space()
			if p.pos >= len(p.body) || p.body[p.pos] != ':' {
				return p.syntax()
			}
			p.pos++
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.space()
			if p.pos >= len(p.body) {
				return p.syntax()
			}
			if p.body[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.body[p.pos] == '}' {
				p.pos++
				break
			}
			return p.syntax()
		}
	}
	p.tok(self).n = p.ntok - self
	start := p.sortedKeys(self)
	defer func() { p.keys = p.keys[:start] }()
	for i := start + 1; i < len(p.keys); i++ {
		if p.compareKeys(p.keys[i], p.keys[i-1]) == 0 {
			// Two values for one field: which one the producer meant is
			// unknowable, and silently picking one could store wrong data.
			// The name is not reported: under extra fields it could be a
			// value (e.g. an object keyed by patient ID).
			return invalid(ReasonBadJSON, "body: duplicate field name in an object")
		}
	}
	return nil
}

// subtree is the number of tokens of the value at i.
func (d *doc) subtree(i uint32) uint32 {
	if t := d.tok(i); t.kind == kindArray || t.kind == kindObject {
		return t.n
	}
	return 1
}

// str reads a string at p.pos (on its opening quote) and checks its text;
// escapes are decoded later, when the text is read.
func (p *parser) str() error {
	p.pos++ // '"'
	start := p.pos
	esc := false
	for {
		if p.pos >= len(p.body) {
			return p.syntax()
		}
		c := p.body[p.pos]
		switch {
		case c == '"':
			t := tok{kind: kindString, esc: esc, off: uint32(start), n: uint32(p.pos - start)}
			p.pos++
			_, err := p.push(t)
			return err
		case c < 0x20:
			return p.syntax() // raw control characters must be escaped
		case c == '\\':
			esc = true
			if _, err := p.escape(); err != nil {
				return err
			}
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.body[p.pos:])
			if r == utf8.RuneError {
				if size == 1 {
					return invalid(ReasonInvalidUTF8, "body: not valid UTF-8")
				}
				return replacementChar()
			}
			p.pos += size
		}
	}
}

// unescape appends the decoded text of a string the parser accepted.
func unescape(dst, raw []byte) []byte {
	q := parser{doc: doc{body: raw}}
	for q.pos < len(raw) {
		if raw[q.pos] != '\\' {
			j := bytes.IndexByte(raw[q.pos:], '\\')
			if j < 0 {
				return append(dst, raw[q.pos:]...)
			}
			dst = append(dst, raw[q.pos:q.pos+j]...)
			q.pos += j
			continue
		}
		r, _ := q.escape() // checked by str
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

func replacementChar() error {
	return invalid(ReasonInvalidUTF8, "body: U+FFFD replacement character (invalid bytes replaced in transit)")
}

// escape decodes the escape at p.pos (on its backslash).
func (p *parser) escape() (rune, error) {
	if p.pos+1 >= len(p.body) {
		return 0, p.syntax()
	}
	c := p.body[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		p.pos -= 2
		return 0, p.syntax()
	}
	r, ok := p.hex4()
	if !ok {
		return 0, p.syntax()
	}
	switch {
	case r == utf8.RuneError:
		return 0, replacementChar()
	case r >= 0xDC00 && r <= 0xDFFF:
		return 0, invalid(ReasonInvalidUTF8, "body: lone surrogate escape at byte offset %d", p.pos-6)
	case r >= 0xD800 && r <= 0xDBFF:
		// A high surrogate must be followed by a low one: encoding/json
		// turns a lone one into U+FFFD, which would store altered text.
		if p.pos+1 < len(p.body) && p.body[p.pos] == '\\' && p.body[p.pos+1] == 'u' {
			p.pos += 2
			lo, ok := p.hex4()
			if !ok {
				return 0, p.syntax()
			}
			if lo >= 0xDC00 && lo <= 0xDFFF {
				return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), nil
			}
		}
		return 0, invalid(ReasonInvalidUTF8, "body: lone surrogate escape at byte offset %d", p.pos-6)
	}
	return r, nil
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.body) {
		return 0, false
	}
	var r rune
	for _, c := range p.body[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// appendCanonical writes the value at i as canonical JSON: object keys in
// byte order, no insignificant whitespace, numbers as sent, strings escaped
// minimally and always the same way. Equal content therefore gives equal
// bytes whatever the producer's field order, spacing or optional escapes.
func (d *doc) appendCanonical(b []byte, i uint32) []byte {
	t := d.tok(i)
	switch t.kind {
	case kindNull, kindBool, kindNumber:
		return append(b, d.raw(t)...)
	case kindString:
		return appendString(b, d.text(t, &d.text1))
	case kindArray:
		b = append(b, '[')
		for j, end := i+1, i+t.n; j < end; j += d.subtree(j) {
			if j > i+1 {
				b = append(b, ',')
			}
			b = d.appendCanonical(b, j)
		}
		return append(b, ']')
	default:
		// Sorted again here rather than kept from parsing: keeping every
		// object's order would cost memory per field for the whole parse.
		b = append(b, '{')
		start := d.sortedKeys(i)
		for j := start; j < len(d.keys); j++ {
			if j > start {
				b = append(b, ',')
			}
			k := d.keys[j]
			b = appendString(b, d.text(d.tok(k), &d.text1))
			b = append(b, ':')
			b = d.appendCanonical(b, k+1)
		}
		d.keys = d.keys[:start]
		return append(b, '}')
	}
}

func (n *node) appendCanonical(b []byte) []byte { return n.d.appendCanonical(b, n.i) }

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s []byte) []byte {
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			// Multi-byte UTF-8 is copied byte by byte: the parser already
			// refused invalid UTF-8 in strings.
			b = append(b, c)
		}
	}
	return append(b, '"')
}
