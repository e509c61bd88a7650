package syncevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
)

// The body is decoded into a small tree rather than map[string]any so that
// duplicate field names can be rejected (a map would keep the last one
// silently) and number literals are kept exactly as sent.

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

type node struct {
	kind    kind
	text    string   // string value, number literal, or "true"/"false"
	elems   []node   // array elements
	members []member // object members, sorted by key
}

type member struct {
	key string
	val node
}

// member returns the value of an object's field, or nil when absent.
func (n *node) member(key string) *node {
	if n.kind != kindObject {
		return nil
	}
	i, ok := slices.BinarySearchFunc(n.members, key, func(m member, k string) int {
		return strings.Compare(m.key, k)
	})
	if !ok {
		return nil
	}
	return &n.members[i].val
}

func decode(body []byte) (*node, error) {
	// json.Valid is the strict syntax check; the token walk below then
	// cannot meet malformed input.
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		// The decoder's message can quote a character of the body, which
		// may be patient data, so only the offset is reported.
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			return nil, invalid(ReasonBadJSON, "body: invalid JSON at byte offset %d", se.Offset)
		}
		return nil, invalid(ReasonBadJSON, "body: invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	root, err := readValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid(ReasonBadJSON, "body: data after the JSON value")
	}
	return &root, nil
}

func readValue(dec *json.Decoder, depth int) (node, error) {
	tok, err := dec.Token()
	if err != nil {
		return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
	}
	switch t := tok.(type) {
	case nil:
		return node{kind: kindNull}, nil
	case bool:
		if t {
			return node{kind: kindBool, text: "true"}, nil
		}
		return node{kind: kindBool, text: "false"}, nil
	case json.Number:
		return node{kind: kindNumber, text: string(t)}, nil
	case string:
		return node{kind: kindString, text: t}, nil
	case json.Delim:
		if depth >= maxDepth {
			return node{}, invalid(ReasonBadJSON, "body: nested deeper than %d levels", maxDepth)
		}
		if t == '[' {
			return readArray(dec, depth)
		}
		return readObject(dec, depth)
	}
	return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
}

func readArray(dec *json.Decoder, depth int) (node, error) {
	n := node{kind: kindArray}
	for dec.More() {
		v, err := readValue(dec, depth+1)
		if err != nil {
			return node{}, err
		}
		n.elems = append(n.elems, v)
	}
	if _, err := dec.Token(); err != nil { // closing ']'
		return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
	}
	return n, nil
}

func readObject(dec *json.Decoder, depth int) (node, error) {
	n := node{kind: kindObject}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
		}
		v, err := readValue(dec, depth+1)
		if err != nil {
			return node{}, err
		}
		n.members = append(n.members, member{key: key, val: v})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return node{}, invalid(ReasonBadJSON, "body: invalid JSON")
	}
	slices.SortStableFunc(n.members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(n.members); i++ {
		if n.members[i].key == n.members[i-1].key {
			// Two values for one field: which one the producer meant is
			// unknowable, and silently picking one could store wrong data.
			// The name is not reported: under extra fields it could be a value
			// (e.g. an object keyed by patient ID).
			return node{}, invalid(ReasonBadJSON, "body: duplicate field name in an object")
		}
	}
	return n, nil
}

// appendCanonical writes n as canonical JSON: object keys in byte order, no
// insignificant whitespace, numbers as sent, strings escaped minimally and
// always the same way. Equal content therefore gives equal bytes whatever
// the producer's field order, spacing or optional escapes.
func (n *node) appendCanonical(b []byte) []byte {
	switch n.kind {
	case kindNull:
		return append(b, "null"...)
	case kindBool, kindNumber:
		return append(b, n.text...)
	case kindString:
		return appendString(b, n.text)
	case kindArray:
		b = append(b, '[')
		for i := range n.elems {
			if i > 0 {
				b = append(b, ',')
			}
			b = n.elems[i].appendCanonical(b)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i := range n.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n.members[i].key)
			b = append(b, ':')
			b = n.members[i].val.appendCanonical(b)
		}
		return append(b, '}')
	}
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
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
			// Multi-byte UTF-8 is copied byte by byte: the decoder already
			// guarantees valid UTF-8 in decoded strings.
			b = append(b, c)
		}
	}
	return append(b, '"')
}
