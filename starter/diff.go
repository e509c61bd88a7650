package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// A conflict is decided by a person; what they need first is which fields
// differ and which version the device wrote first, not two payloads to
// compare by eye.

// fieldChange is one JSON leaf that differs between two versions.
type fieldChange struct {
	Path               string
	Stored, Incoming   any
	InStored, InIncome bool
}

// diffJSON compares two JSON documents leaf by leaf (objects by member,
// arrays by index) and returns the differing paths in order.
func diffJSON(stored, incoming []byte) ([]fieldChange, error) {
	a, err := flattenJSON(stored)
	if err != nil {
		return nil, fmt.Errorf("stored version: %w", err)
	}
	b, err := flattenJSON(incoming)
	if err != nil {
		return nil, fmt.Errorf("incoming version: %w", err)
	}
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	var out []fieldChange
	for p := range paths {
		va, okA := a[p]
		vb, okB := b[p]
		if okA && okB && fmt.Sprint(va) == fmt.Sprint(vb) && fmt.Sprintf("%T", va) == fmt.Sprintf("%T", vb) {
			continue
		}
		out = append(out, fieldChange{Path: p, Stored: va, Incoming: vb, InStored: okA, InIncome: okB})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func flattenJSON(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(string, any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out[path] = "{}"
			}
			for k, c := range x {
				if path == "" {
					walk(k, c)
				} else {
					walk(path+"."+k, c)
				}
			}
		case []any:
			if len(x) == 0 {
				out[path] = "[]"
			}
			for i, c := range x {
				walk(path+"["+strconv.Itoa(i)+"]", c)
			}
		default:
			out[path] = x
		}
	}
	walk("", v)
	return out, nil
}

// renderLeaf shows a leaf value, masked like maskBody unless show.
func renderLeaf(v any, present, show bool) string {
	if !present {
		return "(absent)"
	}
	if !show {
		v = maskValue(v)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(b.String())
}

// firstByDevice says which version the device wrote first, from the
// deviceTimestamp of each.
func firstByDevice(stored, incoming time.Time) string {
	switch {
	case stored.IsZero() || incoming.IsZero():
		return "unknown (a version has no device timestamp)"
	case stored.Before(incoming):
		return fmt.Sprintf("stored version (device time %s; incoming %s, %s later)", fmtTime(stored), fmtTime(incoming), incoming.Sub(stored))
	case incoming.Before(stored):
		return fmt.Sprintf("incoming version (device time %s; stored %s, %s later): delivered out of order, the stored one is the device's newer write",
			fmtTime(incoming), fmtTime(stored), stored.Sub(incoming))
	default:
		return fmt.Sprintf("neither: both carry device time %s", fmtTime(stored))
	}
}

// deviceTime reads a version's deviceTimestamp; zero when it cannot.
func deviceTime(key string, payload []byte) time.Time {
	ev, err := syncevent.Parse(key, "", payload)
	if err != nil {
		return time.Time{}
	}
	return ev.DeviceTime
}
