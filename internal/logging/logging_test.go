package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"json": JSON, "text": Text, " JSON ": JSON, "Text": Text} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "logfmt", "jsonl"} {
		if _, err := ParseFormat(in); err == nil || !strings.Contains(err.Error(), "json or text") {
			t.Errorf("ParseFormat(%q) = %v, want an error naming the choices", in, err)
		}
	}
}

// Every line is one JSON object with the documented keys, whatever its
// values: an error is its text, and a value JSON cannot encode (a channel,
// as a dependency might log) still leaves the line an object.
func TestJSONLinesAreObjects(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	log := New(&buf, JSON, level).With("component", "test")
	log.Info("first", "error", errors.New("connection refused"), "n", 3)
	log.Warn("odd value", "ch", make(chan int), "multi", "line\nbreak")
	log.Debug("hidden at info")
	level.Set(slog.LevelDebug)
	log.Debug("shown at debug")

	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d:\n%s", len(lines), buf.String())
	}
	var objs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not one JSON object: %v: %s", err, l)
		}
		for _, k := range []string{"time", "level", "msg", "component"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %q in %s", k, l)
			}
		}
		objs = append(objs, m)
	}
	if objs[0]["error"] != "connection refused" || objs[0]["level"] != "INFO" {
		t.Errorf("first line: %v", objs[0])
	}
	if objs[1]["multi"] != "line\nbreak" || objs[1]["level"] != "WARN" {
		t.Errorf("second line: %v", objs[1])
	}
	if objs[2]["msg"] != "shown at debug" {
		t.Errorf("the level var was not followed: %v", objs[2])
	}
}

func TestTextFormat(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, Text, slog.LevelInfo).Info("codec audit", "op", "decode")
	if got := buf.String(); !strings.Contains(got, `level=INFO msg="codec audit" op=decode`) {
		t.Fatalf("text line: %s", got)
	}
}
