// Package systemdunit reads the systemd unit and environment file that
// deploy/systemd ships for running a worker on an ECS instance, so that
// tests can hold them to what the worker needs: a stop timeout longer than
// its drain, an environment the config loader accepts, a sandbox that
// systemd-analyze passes. systemd itself reads these files in production;
// this reader understands only the subset the shipped files use and
// refuses the rest, so a test never passes on a line systemd would read
// differently.
package systemdunit

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Unit is a parsed unit file: for each section, its assignments in order.
// A key may repeat (Environment=, LoadCredential=, SystemCallFilter=).
type Unit map[string][]Assignment

// Assignment is one Key=Value line of a section.
type Assignment struct {
	Key, Value string
	Line       int
}

// Values returns every value of key in section, in file order.
func (u Unit) Values(section, key string) []string {
	var out []string
	for _, a := range u[section] {
		if a.Key == key {
			out = append(out, a.Value)
		}
	}
	return out
}

// Value returns the last value of key in section (systemd's rule for
// single-valued settings) and whether it is set.
func (u Unit) Value(section, key string) (string, bool) {
	vs := u.Values(section, key)
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// ReadUnit parses a unit file. Continuation lines (a trailing backslash)
// are refused rather than joined: the shipped unit has none, and joining
// them the way systemd does (comments inside, whitespace) is not worth
// getting subtly wrong.
func ReadUnit(path string) (Unit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("systemdunit: %w", err)
	}
	u := Unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("systemdunit: %s:%d: continuation lines are not supported", path, n)
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("systemdunit: %s:%d: bad section header %q", path, n, line)
			}
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("systemdunit: %s:%d: want Key=Value inside a section, got %q", path, n, line)
		}
		u[section] = append(u[section], Assignment{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v), Line: n})
	}
	return u, sc.Err()
}

// timespanUnits are systemd's time span suffixes (systemd.time(7)) that a
// stop timeout might reasonably use.
var timespanUnits = map[string]time.Duration{
	"ms": time.Millisecond, "msec": time.Millisecond,
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
}

// ParseTimespan reads a systemd time span such as "120", "120s" or
// "2min 10s" (a bare number is seconds). "infinity" is refused: a unit
// that waits forever for a stop hides a hung worker.
func ParseTimespan(s string) (time.Duration, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("systemdunit: empty time span")
	}
	var total time.Duration
	for _, f := range fields {
		i := strings.IndexFunc(f, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		num, unit := f, "s"
		if i >= 0 {
			num, unit = f[:i], f[i:]
		}
		per, ok := timespanUnits[unit]
		n, err := strconv.ParseFloat(num, 64)
		if !ok || err != nil || num == "" {
			return 0, fmt.Errorf("systemdunit: bad time span %q", s)
		}
		total += time.Duration(n * float64(per))
	}
	return total, nil
}

// ReadEnvironmentFile reads a file for EnvironmentFile=. systemd accepts
// quotes, escapes and continuation lines there and keeps a "#" after a
// value as part of it; this reader accepts only plain KEY=VALUE lines and
// whole-line comments, and refuses a value holding a quote, a backslash or
// " #", so what it returns is what systemd passes to the worker.
func ReadEnvironmentFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("systemdunit: %w", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isName(k) {
			return nil, fmt.Errorf("systemdunit: %s:%d: want KEY=VALUE", path, n)
		}
		if strings.ContainsAny(v, `"'\`) || strings.Contains(v, " #") || strings.HasPrefix(v, "#") {
			return nil, fmt.Errorf("systemdunit: %s:%d: %s: quotes, backslashes and trailing comments are read differently by systemd; keep values plain", path, n, k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("systemdunit: %s:%d: %s set twice", path, n, k)
		}
		out[k] = v
	}
	return out, sc.Err()
}

func isName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
