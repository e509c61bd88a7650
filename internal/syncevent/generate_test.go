package syncevent

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	o := GenOptions{Count: 300, DistinctKeys: 200, ChangedRate: 0.3, BadRate: 0.1, Seed: 42, KeyPrefix: "demo-"}
	a, b := Generate(o), Generate(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same options gave different batches")
	}
	o.Seed = 43
	if reflect.DeepEqual(a, Generate(o)) {
		t.Fatal("different seeds gave the same batch")
	}
}

func TestGenerateEmpty(t *testing.T) {
	t.Parallel()
	if got := Generate(GenOptions{Count: 0, Seed: 1}); len(got) != 0 {
		t.Errorf("Count 0 gave %d messages", len(got))
	}
	if got := Generate(GenOptions{Count: -5, Seed: 1}); len(got) != 0 {
		t.Errorf("negative Count gave %d messages", len(got))
	}
}

func TestGenCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o                  GenOptions
		nw, dup, chg, badN int
	}{
		{GenOptions{Count: 100}, 100, 0, 0, 0},
		{GenOptions{Count: 100, DistinctKeys: 60, ChangedRate: 0.25, BadRate: 0.1}, 60, 22, 8, 10},
		{GenOptions{Count: 100, DistinctKeys: 500, BadRate: 0.2}, 80, 0, 0, 20},
		{GenOptions{Count: 10, DistinctKeys: 1, ChangedRate: 1}, 1, 0, 9, 0},
		{GenOptions{Count: 10, BadRate: 5, ChangedRate: -1}, 0, 0, 0, 10},
	}
	for _, tc := range tests {
		nw, dup, chg, badN := GenCounts(tc.o)
		if nw != tc.nw || dup != tc.dup || chg != tc.chg || badN != tc.badN {
			t.Errorf("GenCounts(%+v) = %d,%d,%d,%d want %d,%d,%d,%d", tc.o, nw, dup, chg, badN, tc.nw, tc.dup, tc.chg, tc.badN)
		}
	}
}

// TestGenerateProportions checks every message against Parse: the batch is
// only useful for demos and load tests if each message really has the fate
// its Kind claims.
func TestGenerateProportions(t *testing.T) {
	t.Parallel()
	o := GenOptions{Count: 2000, DistinctKeys: 1200, ChangedRate: 0.25, BadRate: 0.05, Seed: 2025, KeyPrefix: "t1/"}
	msgs := Generate(o)
	if len(msgs) != o.Count {
		t.Fatalf("got %d messages, want %d", len(msgs), o.Count)
	}
	wantNew, wantDup, wantChanged, wantBad := GenCounts(o)

	first := map[string]Event{}   // key -> first version
	seenHash := map[string]bool{} // key+hash of every stored or conflicting version
	counts := map[string]int{}    // kind -> count
	reasons := map[string]int{}   // bad reason -> count
	styles := map[string]bool{}   // timestamp styles seen
	for i, m := range msgs {
		if m.Tag != Tag {
			t.Fatalf("message %d tag %q", i, m.Tag)
		}
		counts[m.Kind]++
		ev, err := Parse(m.Key, "id", m.Body)
		if reason, ok := strings.CutPrefix(m.Kind, KindBadPrefix); ok {
			reasons[reason]++
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Reason != reason {
				t.Fatalf("message %d kind %s: Parse error %v", i, m.Kind, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("message %d kind %s: %v\n%s", i, m.Kind, err, m.Body)
		}
		if !strings.HasPrefix(m.Key, o.KeyPrefix) {
			t.Fatalf("key %q lacks prefix", m.Key)
		}
		styles[timestampStyle(m.Body)] = true
		orig, seen := first[m.Key]
		switch m.Kind {
		case KindNew:
			if seen {
				t.Fatalf("message %d: new key %q repeats an earlier key", i, m.Key)
			}
			first[m.Key] = ev
		case KindDup:
			if !seen {
				t.Fatalf("message %d: dup of key %q before its first version", i, m.Key)
			}
			if ev.Hash != orig.Hash {
				t.Fatalf("message %d: dup has a different payload\n%s\n%s", i, orig.Payload, ev.Payload)
			}
		case KindChanged:
			if !seen {
				t.Fatalf("message %d: changed key %q before its first version", i, m.Key)
			}
			if ev.Hash == orig.Hash || seenHash[m.Key+ev.Hash] {
				t.Fatalf("message %d: changed payload is not a new version", i)
			}
			if ev.PatientID != orig.PatientID {
				t.Fatalf("message %d: amendment changed the patient", i)
			}
		default:
			t.Fatalf("message %d: unknown kind %q", i, m.Kind)
		}
		seenHash[m.Key+ev.Hash] = true
	}
	if counts[KindNew] != wantNew || counts[KindDup] != wantDup || counts[KindChanged] != wantChanged {
		t.Errorf("kinds %v, want new=%d dup=%d changed=%d", counts, wantNew, wantDup, wantChanged)
	}
	if len(first) != o.DistinctKeys {
		t.Errorf("%d distinct keys, want %d", len(first), o.DistinctKeys)
	}
	bad := 0
	for _, r := range BadReasons() {
		bad += reasons[r]
		if reasons[r] == 0 {
			t.Errorf("no bad message with reason %s", r)
		}
	}
	if bad != wantBad {
		t.Errorf("%d bad messages, want %d", bad, wantBad)
	}
	if len(styles) < 4 {
		t.Errorf("only timestamp styles %v: want a realistic mix", styles)
	}
}

func timestampStyle(body []byte) string {
	s := string(body)
	_, after, _ := strings.Cut(s, `"deviceTimestamp":`)
	switch {
	case !strings.HasPrefix(after, `"`):
		return "number"
	case len(after) > 1 && !strings.Contains(after[:min(len(after), 14)], "-"):
		return "numeric string"
	case strings.Contains(after[:min(len(after), 40)], "Z"):
		return "utc"
	case strings.Contains(after[:min(len(after), 40)], "+"):
		return "offset"
	default:
		return "no zone"
	}
}

func TestGenerateDupsSometimesReserialised(t *testing.T) {
	t.Parallel()
	msgs := Generate(GenOptions{Count: 400, DistinctKeys: 100, Seed: 9})
	firstBody := map[string]string{}
	identical, different := 0, 0
	for _, m := range msgs {
		if m.Kind == KindNew {
			firstBody[m.Key] = string(m.Body)
			continue
		}
		if string(m.Body) == firstBody[m.Key] {
			identical++
		} else {
			different++
		}
	}
	// Both byte-identical redeliveries and re-serialised re-sends must be
	// present, or the canonical payload goes untested by load runs.
	if identical == 0 || different == 0 {
		t.Errorf("dups identical=%d reserialised=%d: want both", identical, different)
	}
}
