// Package compose reads the part of a Docker Compose file that the
// project's deployment tests check (services' images, environment,
// dependencies, healthchecks), with ${VAR} interpolation done as Compose
// does it. No Docker engine runs where the tests run, so this is how the
// reference stack's wiring is proven: the worker service's environment is
// fed to the real config loader.
package compose

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is a parsed, interpolated Compose file.
type File struct {
	Services map[string]Service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
	Networks map[string]any     `yaml:"networks"`
}

// Service is one service; fields Compose allows in two shapes are
// normalised.
type Service struct {
	Image       string       `yaml:"image"`
	Build       any          `yaml:"build"`
	Entrypoint  StringOrList `yaml:"entrypoint"`
	Command     StringOrList `yaml:"command"`
	Environment Environment  `yaml:"environment"`
	DependsOn   DependsOn    `yaml:"depends_on"`
	Healthcheck *Healthcheck `yaml:"healthcheck"`
	Profiles    []string     `yaml:"profiles"`
	Volumes     []string     `yaml:"volumes"`
	Ports       []string     `yaml:"ports"`
	Expose      []string     `yaml:"expose"`
	// Networks the service joins; empty = Compose's "default".
	Networks NameList `yaml:"networks"`
	Deploy   struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// Healthcheck is a service's container healthcheck.
type Healthcheck struct {
	Test    StringOrList `yaml:"test"`
	Disable bool         `yaml:"disable"`
}

// NameList is a list of names Compose allows as a list or as a map keyed
// by name (networks); the map's values are not kept.
type NameList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *NameList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		*l = names
	case yaml.MappingNode:
		*l = nil
		for i := 0; i+1 < len(n.Content); i += 2 {
			*l = append(*l, n.Content[i].Value)
		}
		sort.Strings(*l)
	default:
		return fmt.Errorf("line %d: want a list or a map of names", n.Line)
	}
	return nil
}

// StringOrList is a command given as one string or as a list.
type StringOrList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *StringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = StringOrList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// Environment is a service's environment, from either the map or the
// KEY=VALUE list form. A variable listed without a value (passed through
// from the host) maps to "".
type Environment map[string]string

// UnmarshalYAML implements yaml.Unmarshaler.
func (e *Environment) UnmarshalYAML(n *yaml.Node) error {
	out := Environment{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if v != nil {
				out[k] = *v
			} else {
				out[k] = ""
			}
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment must be a map or a list", n.Line)
	}
	*e = out
	return nil
}

// DependsOn maps each dependency to its condition (service_started when
// the short list form is used).
type DependsOn map[string]string

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *DependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := DependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			out[s] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if v.Condition == "" {
				v.Condition = "service_started"
			}
			out[k] = v.Condition
		}
	default:
		return fmt.Errorf("line %d: depends_on must be a map or a list", n.Line)
	}
	*d = out
	return nil
}

// Load reads path and interpolates every value (not keys) through lookup,
// as `docker compose` does with the shell environment and the env file.
func Load(path string, lookup func(string) (string, bool)) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("compose: %s: %w", path, err)
	}
	if err := interpolateNode(&root, lookup, false); err != nil {
		return nil, fmt.Errorf("compose: %s: %w", path, err)
	}
	var f File
	if err := root.Decode(&f); err != nil {
		return nil, fmt.Errorf("compose: %s: %w", path, err)
	}
	return &f, nil
}

// interpolateNode rewrites scalar values in place. Aliases share their
// anchor's node, so it is visited once through the anchor.
func interpolateNode(n *yaml.Node, lookup func(string) (string, bool), isKey bool) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := interpolateNode(c, lookup, false); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i, c := range n.Content {
			if err := interpolateNode(c, lookup, i%2 == 0); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if isKey || !strings.Contains(n.Value, "$") {
			return nil
		}
		v, err := Interpolate(n.Value, lookup)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		n.Value = v
		// A value like ${REPLICAS:-3} becomes 3: let YAML retype it.
		if n.Style == 0 {
			n.Tag = ""
		}
	}
	return nil
}

// Interpolate expands $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?message}, ${VAR?message}, ${VAR:+alt}, ${VAR+alt} and $$ in s,
// with defaults themselves interpolated (nesting).
func Interpolate(s string, lookup func(string) (string, bool)) (string, error) {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			out.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			out.WriteByte('$')
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			out.WriteByte('$')
			i++
		case next == '{':
			end, err := matchingBrace(s, i+1)
			if err != nil {
				return "", err
			}
			v, err := expandBraced(s[i+2:end], lookup)
			if err != nil {
				return "", err
			}
			out.WriteString(v)
			i = end
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			v, _ := lookup(s[i+1 : j])
			out.WriteString(v)
			i = j - 1
		default:
			out.WriteByte('$')
		}
	}
	return out.String(), nil
}

func matchingBrace(s string, open int) (int, error) {
	depth := 0
	for j := open; j < len(s); j++ {
		switch s[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated ${ in %q", s)
}

func expandBraced(expr string, lookup func(string) (string, bool)) (string, error) {
	j := 0
	for j < len(expr) && isNameChar(expr[j]) {
		j++
	}
	name, rest := expr[:j], expr[j:]
	if name == "" || !isNameStart(name[0]) {
		return "", fmt.Errorf("invalid variable name in ${%s}", expr)
	}
	val, set := lookup(name)
	if rest == "" {
		return val, nil
	}
	op, arg := rest[:1], rest[1:]
	colon := false
	if op == ":" && len(rest) >= 2 {
		colon, op, arg = true, rest[1:2], rest[2:]
	}
	// With the colon an empty value counts as unset.
	present := set && (!colon || val != "")
	switch op {
	case "-":
		if present {
			return val, nil
		}
		return Interpolate(arg, lookup)
	case "?":
		if present {
			return val, nil
		}
		msg, err := Interpolate(arg, lookup)
		if err != nil {
			return "", err
		}
		return "", fmt.Errorf("required variable %s is missing a value: %s", name, msg)
	case "+":
		if present {
			return Interpolate(arg, lookup)
		}
		return "", nil
	}
	return "", fmt.Errorf("unsupported expression ${%s}", expr)
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

// ReadEnvFile parses a Compose env file: KEY=VALUE lines, blank lines and
// # comments; values may be single- or double-quoted, and an unquoted
// value ends at " #".
func ReadEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		t = strings.TrimPrefix(t, "export ")
		k, v, ok := strings.Cut(t, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || !isNameStart(k[0]) || strings.IndexFunc(k, func(r rune) bool { return r > 127 || !isNameChar(byte(r)) }) >= 0 {
			return nil, fmt.Errorf("compose: %s:%d: want KEY=VALUE", path, line)
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0]:
			v = v[1 : len(v)-1]
		default:
			if i := strings.Index(v, " #"); i >= 0 {
				v = strings.TrimSpace(v[:i])
			}
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("compose: %s:%d: %s set twice", path, line, k)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// Lookup returns a lookup over maps, earlier maps winning (Compose gives
// the shell environment precedence over the env file).
func Lookup(maps ...map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		for _, m := range maps {
			if v, ok := m[k]; ok {
				return v, true
			}
		}
		return "", false
	}
}

// StartOrder returns the services in an order that respects depends_on,
// or an error naming a missing dependency or a cycle.
func (f *File) StartOrder() ([]string, error) {
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var order []string
	var visit func(n string, path []string) error
	visit = func(n string, path []string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("depends_on cycle: %s", strings.Join(append(path, n), " -> "))
		case 2:
			return nil
		}
		state[n] = 1
		deps := make([]string, 0, len(f.Services[n].DependsOn))
		for d := range f.Services[n].DependsOn {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if _, ok := f.Services[d]; !ok {
				return fmt.Errorf("service %s depends on unknown service %s", n, d)
			}
			if err := visit(d, append(path, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ErrNoCompose is returned by Tool when neither Compose v2 nor v1 is
// installed.
var ErrNoCompose = errors.New("neither `docker compose` (v2 plugin) nor `docker-compose` is installed; on Debian: apt-get install docker-compose")

// Tool returns the command line prefix that runs Compose: the v2 plugin
// (`docker compose`) when it answers, else the v1 `docker-compose`. Neither
// needs a Docker engine for `config`.
func Tool() ([]string, error) {
	if docker, err := exec.LookPath("docker"); err == nil {
		if exec.Command(docker, "compose", "version").Run() == nil {
			return []string{docker, "compose"}, nil
		}
	}
	if dc, err := exec.LookPath("docker-compose"); err == nil {
		return []string{dc}, nil
	}
	return nil, ErrNoCompose
}
