// Package proccpu measures the CPU time processes take over an interval,
// from /proc/PID/stat (utime + stime), for the benchmarks' "which process
// takes the CPU" figures.
//
// A spec names groups of processes, comma separated:
//
//	temporal=1234,postgres=~postgres,mariadb=~mariadbd|mysqld,workers=11+12+13
//
// A group is either PIDs joined by '+' or, after '~', a regular expression
// matched against the whole process name (/proc/PID/comm). A pattern is
// resolved afresh at every sample, so processes that come and go (a
// PostgreSQL backend per connection) are summed as they are found.
//
// The figures are approximations:
//
//   - a process that exits between two samples loses what it used since
//     the first (its time goes to its parent's cutime, which is not read);
//   - a process that appears between two samples counts all its CPU time,
//     from its own start (it started inside the interval, so that is
//     right unless its PID was reused);
//   - a pattern sums every matching process on the machine: other users of
//     a shared PostgreSQL or MariaDB server are counted too;
//   - times are in clock ticks of 1/100 s (USER_HZ on Linux), so a figure
//     is good to about 10 ms per process.
package proccpu

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ticksPerSecond is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go supports.
const ticksPerSecond = 100

// Group is one named set of processes.
type Group struct {
	Name    string
	PIDs    []int          // fixed processes, or
	Pattern *regexp.Regexp // every process whose name matches
}

// Parse reads a spec (see the package comment). An empty spec is no group.
func Parse(spec string) ([]Group, error) {
	var out []Group
	seen := map[string]bool{}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, src, ok := strings.Cut(f, "=")
		name, src = strings.TrimSpace(name), strings.TrimSpace(src)
		if !ok || name == "" || src == "" {
			return nil, fmt.Errorf("proccpu: %q: want NAME=PID[+PID...] or NAME=~PATTERN", f)
		}
		if strings.ContainsAny(name, " \t/") {
			return nil, fmt.Errorf("proccpu: %q: a name without spaces or slashes", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("proccpu: %q named twice", name)
		}
		seen[name] = true
		g := Group{Name: name}
		if pat, isPat := strings.CutPrefix(src, "~"); isPat {
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				return nil, fmt.Errorf("proccpu: %s: %w", name, err)
			}
			g.Pattern = re
		} else {
			for _, p := range strings.Split(src, "+") {
				pid, err := strconv.Atoi(strings.TrimSpace(p))
				if err != nil || pid <= 0 {
					return nil, fmt.Errorf("proccpu: %s: %q is not a PID", name, p)
				}
				g.PIDs = append(g.PIDs, pid)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// Meter samples a list of groups.
type Meter struct {
	Root   string // "/proc" unless a test says otherwise
	Groups []Group
}

// New is a meter of the groups of spec, after a group "self" (this
// process) when self is true.
func New(spec string, self bool) (*Meter, error) {
	gs, err := Parse(spec)
	if err != nil {
		return nil, err
	}
	if self {
		for _, g := range gs {
			if g.Name == "self" {
				return nil, fmt.Errorf("proccpu: the name self is taken by this process")
			}
		}
		gs = append([]Group{{Name: "self", PIDs: []int{os.Getpid()}}}, gs...)
	}
	return &Meter{Root: "/proc", Groups: gs}, nil
}

// proc identifies a process across PID reuse.
type proc struct {
	pid   int
	start uint64 // starttime, ticks after boot
}

// Snapshot is the CPU ticks of every process of every group at one moment.
type Snapshot map[string]map[proc]uint64

// Usage is a group's CPU time over an interval.
type Usage struct {
	Name    string
	Seconds float64
}

// Snapshot samples every group now. Processes that cannot be read (gone,
// not permitted) are left out.
func (m *Meter) Snapshot() Snapshot {
	s := Snapshot{}
	var all []int // /proc's PIDs, listed once for every pattern
	for _, g := range m.Groups {
		ticks := map[proc]uint64{}
		pids := g.PIDs
		if g.Pattern != nil {
			if all == nil {
				all = m.listPIDs()
			}
			pids = nil
			for _, pid := range all {
				if comm, err := os.ReadFile(filepath.Join(m.Root, strconv.Itoa(pid), "comm")); err == nil && g.Pattern.MatchString(strings.TrimSpace(string(comm))) {
					pids = append(pids, pid)
				}
			}
		}
		for _, pid := range pids {
			b, err := os.ReadFile(filepath.Join(m.Root, strconv.Itoa(pid), "stat"))
			if err != nil {
				continue
			}
			if t, start, err := ParseStat(string(b)); err == nil {
				ticks[proc{pid, start}] = t
			}
		}
		s[g.Name] = ticks
	}
	return s
}

func (m *Meter) listPIDs() []int {
	ents, err := os.ReadDir(m.Root)
	if err != nil {
		return []int{}
	}
	out := []int{}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Since is each group's CPU time from before to now, in the groups' order.
func (m *Meter) Since(before Snapshot) []Usage {
	return m.Between(before, m.Snapshot())
}

// Between is each group's CPU time from before to after: per process the
// difference, or all of it for a process absent from before.
func (m *Meter) Between(before, after Snapshot) []Usage {
	out := make([]Usage, 0, len(m.Groups))
	for _, g := range m.Groups {
		var ticks uint64
		for p, t := range after[g.Name] {
			if b, ok := before[g.Name][p]; ok && b <= t {
				ticks += t - b
			} else if !ok {
				ticks += t
			}
		}
		out = append(out, Usage{Name: g.Name, Seconds: float64(ticks) / ticksPerSecond})
	}
	return out
}

// ParseStat reads utime + stime and starttime from a /proc/PID/stat line.
// The process name, in parentheses, may hold spaces and parentheses: the
// fields are counted from the last ')'.
func ParseStat(line string) (cpuTicks, startTicks uint64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("proccpu: no process name in %q", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("proccpu: %d fields after the name, want at least 20", len(f))
	}
	var v [3]uint64
	for j, k := range []int{11, 12, 19} {
		if v[j], err = strconv.ParseUint(f[k], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("proccpu: field %d: %w", k+3, err)
		}
	}
	return v[0] + v[1], v[2], nil
}

// Add sums two usage lists group by group (a group missing from a is
// appended).
func Add(a, b []Usage) []Usage {
	out := append([]Usage(nil), a...)
	for _, u := range b {
		found := false
		for i := range out {
			if out[i].Name == u.Name {
				out[i].Seconds += u.Seconds
				found = true
				break
			}
		}
		if !found {
			out = append(out, u)
		}
	}
	return out
}

// Format is "self 1.23s, temporal 4.56s".
func Format(us []Usage) string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = fmt.Sprintf("%s %.2fs", u.Name, u.Seconds)
	}
	return strings.Join(parts, ", ")
}
