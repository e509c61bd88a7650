package proccpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestParse(t *testing.T) {
	gs, err := Parse(" temporal=12, postgres=~postgres ,db=~mariadbd|mysqld,w=1+2+3,")
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 4 || gs[0].Name != "temporal" || len(gs[0].PIDs) != 1 || gs[0].PIDs[0] != 12 {
		t.Fatalf("got %+v", gs)
	}
	if gs[1].Pattern == nil || !gs[1].Pattern.MatchString("postgres") || gs[1].Pattern.MatchString("postgres2") {
		t.Errorf("postgres pattern %v: want the whole name matched", gs[1].Pattern)
	}
	if !gs[2].Pattern.MatchString("mysqld") || !gs[2].Pattern.MatchString("mariadbd") {
		t.Errorf("alternation %v not matched as a whole", gs[2].Pattern)
	}
	if fmt.Sprint(gs[3].PIDs) != "[1 2 3]" {
		t.Errorf("w: %v", gs[3].PIDs)
	}
	if gs, err := Parse(""); err != nil || len(gs) != 0 {
		t.Errorf("empty spec: %v, %v", gs, err)
	}
	for _, bad := range []string{"temporal", "=12", "t=", "t=x", "t=1+", "t=~(", "a=1,a=2", "a b=1", "t=-3"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if _, err := New("self=1", true); err == nil {
		t.Error("New accepted a group named self beside this process")
	}
}

func statLine(pid int, comm string, utime, stime, start uint64) string {
	// Fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime, then more.
	return fmt.Sprintf("%d (%s) S 1 1 1 0 -1 4194304 10 0 0 0 %d %d 7 7 20 0 1 0 %d 3133440 409 0\n", pid, comm, utime, stime, start)
}

func TestParseStat(t *testing.T) {
	cpu, start, err := ParseStat(statLine(7, "odd) (name", 150, 50, 9000))
	if err != nil || cpu != 200 || start != 9000 {
		t.Errorf("got %d, %d, %v; want 200, 9000", cpu, start, err)
	}
	if _, _, err := ParseStat("7 (short) S 1 2"); err == nil {
		t.Error("a short line accepted")
	}
	if _, _, err := ParseStat("no name"); err == nil {
		t.Error("a line without a name accepted")
	}
}

type fakeProc struct{ root string }

func (f fakeProc) set(t *testing.T, pid int, comm string, utime, stime, start uint64) {
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(pid, comm, utime, stime, start)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f fakeProc) gone(t *testing.T, pid int) {
	if err := os.RemoveAll(filepath.Join(f.root, strconv.Itoa(pid))); err != nil {
		t.Fatal(err)
	}
}

// A pattern group sums the processes found at each sample: a backend that
// appears counts all its time, one that exits loses what it used, a
// reused PID counts as a new process; PID groups ignore other processes.
func TestMeterBetween(t *testing.T) {
	f := fakeProc{t.TempDir()}
	f.set(t, 10, "temporal-server", 100, 0, 5)
	f.set(t, 20, "postgres", 50, 50, 5)  // postmaster
	f.set(t, 21, "postgres", 10, 0, 6)   // backend that exits
	f.set(t, 22, "postgres", 10, 0, 7)   // backend whose PID is reused
	f.set(t, 30, "mariadbd", 1000, 0, 1) // not in any group
	gs, err := Parse("temporal=10,postgres=~postgres,gone=99")
	if err != nil {
		t.Fatal(err)
	}
	m := &Meter{Root: f.root, Groups: gs}
	before := m.Snapshot()

	f.set(t, 10, "temporal-server", 250, 50, 5) // +200 ticks
	f.set(t, 20, "postgres", 60, 60, 5)         // +20
	f.gone(t, 21)                               // lost
	f.set(t, 22, "postgres", 3, 2, 900)         // new process: +5
	f.set(t, 23, "postgres", 30, 0, 901)        // new backend: +30
	f.set(t, 30, "mariadbd", 5000, 0, 1)
	got := m.Since(before)
	want := []Usage{{"temporal", 2}, {"postgres", 0.55}, {"gone", 0}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || fmt.Sprintf("%.2f", got[i].Seconds) != fmt.Sprintf("%.2f", want[i].Seconds) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	if s := Format(Add(got, []Usage{{"temporal", 1}, {"x", 0.5}})); s != "temporal 3.00s, postgres 0.55s, gone 0.00s, x 0.50s" {
		t.Errorf("Format(Add) = %q", s)
	}
}

// The real /proc: this process's own time never goes down.
func TestMeterSelf(t *testing.T) {
	m, err := New("", true)
	if err != nil {
		t.Fatal(err)
	}
	before := m.Snapshot()
	if len(before["self"]) != 1 {
		t.Fatalf("self not read from /proc: %v", before)
	}
	if u := m.Since(before); len(u) != 1 || u[0].Name != "self" || u[0].Seconds < 0 {
		t.Errorf("got %v", u)
	}
}
