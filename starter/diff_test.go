package main

import (
	"strings"
	"testing"
	"time"
)

func TestDiffJSONListsChangedAddedAndRemovedLeaves(t *testing.T) {
	a := []byte(`{"patientData":{"patientId":"P-1","notes":"old","tags":["a","b"]},"deviceTimestamp":1,"same":{"x":1}}`)
	b := []byte(`{"patientData":{"patientId":"P-1","notes":"new","tags":["a"],"ward":"3"},"deviceTimestamp":2,"same":{"x":1}}`)
	got, err := diffJSON(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range got {
		paths = append(paths, c.Path)
	}
	if strings.Join(paths, " ") != "deviceTimestamp patientData.notes patientData.tags[1] patientData.ward" {
		t.Fatalf("paths %v", paths)
	}
	if got[2].InIncome || !got[2].InStored || got[3].InStored || !got[3].InIncome {
		t.Errorf("presence wrong: %+v", got)
	}
	if r := renderLeaf(got[1].Stored, true, false); r != `"***"` {
		t.Errorf("masked leaf %s", r)
	}
	if r := renderLeaf(got[1].Stored, true, true); r != `"old"` {
		t.Errorf("shown leaf %s", r)
	}
	if r := renderLeaf(nil, false, true); r != "(absent)" {
		t.Errorf("absent leaf %s", r)
	}
	if _, err := diffJSON(a, []byte("{not json")); err == nil {
		t.Error("invalid incoming version compared")
	}
}

func TestFirstByDevice(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	if s := firstByDevice(t0, t0.Add(time.Minute)); !strings.HasPrefix(s, "stored version") {
		t.Error(s)
	}
	if s := firstByDevice(t0.Add(time.Minute), t0); !strings.HasPrefix(s, "incoming version") || !strings.Contains(s, "out of order") {
		t.Error(s)
	}
	if s := firstByDevice(t0, t0); !strings.HasPrefix(s, "neither") {
		t.Error(s)
	}
	if s := firstByDevice(time.Time{}, t0); !strings.HasPrefix(s, "unknown") {
		t.Error(s)
	}
}
