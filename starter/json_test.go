package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// --json output is checked through generic maps, not the Go types that
// produced it: encoding/json matches field names without regard to case,
// so decoding into the same struct would not notice a renamed field.

// decodeJSON parses out as exactly one JSON document.
func decodeJSON(t *testing.T, out string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", out)
	}
	return v
}

func jsonObject(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not a JSON object: %#v", v)
	}
	return m
}

func jsonArray(t *testing.T, v any) []any {
	t.Helper()
	a, ok := v.([]any)
	if !ok {
		t.Fatalf("not a JSON array: %#v", v)
	}
	return a
}

// at follows a dotted path of object fields, failing if one is missing.
func at(t *testing.T, v any, path string) any {
	t.Helper()
	for _, name := range strings.Split(path, ".") {
		m := jsonObject(t, v)
		next, ok := m[name]
		if !ok {
			t.Fatalf("no field %q (of %s) in %v", name, path, m)
		}
		v = next
	}
	return v
}

// atType is the value at path, which must be a T.
func atType[T any](t *testing.T, v any, path string) T {
	t.Helper()
	x, ok := at(t, v, path).(T)
	if !ok {
		t.Fatalf("%s is not a %T: %#v", path, x, at(t, v, path))
	}
	return x
}

func atString(t *testing.T, v any, path string) string { t.Helper(); return atType[string](t, v, path) }
func atBool(t *testing.T, v any, path string) bool     { t.Helper(); return atType[bool](t, v, path) }

func atInt(t *testing.T, v any, path string) int64 {
	t.Helper()
	return number(t, path, atType[json.Number](t, v, path).Int64)
}

func atFloat(t *testing.T, v any, path string) float64 {
	t.Helper()
	return number(t, path, atType[json.Number](t, v, path).Float64)
}

func number[T any](t *testing.T, path string, conv func() (T, error)) T {
	t.Helper()
	x, err := conv()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return x
}

// starterJSON runs a command with --json and returns its one document.
func (h *harness) starterJSON(args ...string) any {
	h.t.Helper()
	return decodeJSON(h.t, h.mustStarter(append(args, "--json")...))
}
