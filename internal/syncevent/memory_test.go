package syncevent

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// smallValuesBody is a valid sync event of about size bytes whose extra
// field holds many small JSON values: the worst case for a parser's
// memory per body byte.
func smallValuesBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"patientData":{"patientId":"P-1","notes":"n"},"deviceTimestamp":1740989730123,"readings":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `[%d,true,null,"a\n",{"k":%d}]`, i%10, i%7)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// allocated returns the bytes f allocates. Not parallel: TotalAlloc is
// process-wide, and parallel tests only run after the sequential ones.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The issue measured 138 MiB of heap for a 1.5 MiB body of small values
// (~90x) with json.Valid + Unmarshal + Decoder. Everything Parse allocates,
// live or not, is an upper bound of its peak heap: it must stay under 10x
// the body, whether the body is accepted (limits raised to admit it) or
// refused by the default caps.
func TestParseMemoryBoundedByBody(t *testing.T) {
	body := smallValuesBody(3 << 19) // 1.5 MiB
	lenient := Limits{MaxBodyBytes: 2 << 20, MaxValues: 1 << 21, MaxContainer: 1 << 20}
	var ev Event
	var err error
	got := allocated(func() { ev, err = lenient.Parse("k", "m", body) })
	if err != nil {
		t.Fatalf("lenient limits: %v", err)
	}
	if len(ev.Payload) == 0 {
		t.Fatal("no payload")
	}
	t.Logf("accepted %d-byte body: %d bytes allocated (%.1fx)", len(body), got, float64(got)/float64(len(body)))
	if got > 10*uint64(len(body)) {
		t.Errorf("accepted %d-byte body allocated %d bytes, more than 10x", len(body), got)
	}

	strict := Limits{MaxBodyBytes: 2 << 20, MaxContainer: 1 << 20} // default MaxValues
	got = allocated(func() { _, err = strict.Parse("k", "m", body) })
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Reason != ReasonBadJSON || !strings.Contains(ie.Detail, "JSON values") {
		t.Fatalf("default value cap: err = %v, want bad_json for too many values", err)
	}
	t.Logf("refused %d-byte body: %d bytes allocated (%.1fx)", len(body), got, float64(got)/float64(len(body)))
	if got > 10*uint64(len(body)) {
		t.Errorf("refused %d-byte body allocated %d bytes, more than 10x", len(body), got)
	}
}
