// Package monitoring reads the shipped Prometheus alert rules
// (deploy/prometheus/alerts.yml) and Grafana dashboard
// (deploy/grafana/syncbridge.json) and pulls out every query and every
// metric name they use. It exists so tests can prove, against the worker's
// real /metrics and a real Prometheus, that no alert or panel names a
// metric the worker does not emit: a renamed metric otherwise turns an
// alert silently into one that never fires.
package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Paths of the shipped files, relative to the repository root.
const (
	AlertsFile    = "deploy/prometheus/alerts.yml"
	DashboardFile = "deploy/grafana/syncbridge.json"
)

// Rule is one alerting rule of alerts.yml.
type Rule struct {
	Group       string            `yaml:"-"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []Rule `yaml:"rules"`
	} `yaml:"groups"`
}

// LoadRules reads an alert rules file.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read alert rules: %w", err)
	}
	var f rulesFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse alert rules %s: %w", path, err)
	}
	var out []Rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			r.Group = g.Name
			out = append(out, r)
		}
	}
	return out, nil
}

// Panel query of the dashboard.
type Query struct {
	Panel string
	Expr  string
}

// Dashboard is the part of a Grafana dashboard the tests look at.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Panel is a dashboard panel; rows nest panels.
type Panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []Panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// LoadDashboard reads a dashboard JSON file.
func LoadDashboard(path string) (Dashboard, error) {
	var d Dashboard
	b, err := os.ReadFile(path)
	if err != nil {
		return d, fmt.Errorf("read dashboard: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("parse dashboard %s: %w", path, err)
	}
	return d, nil
}

// Queries returns every panel query in order, rows flattened.
func (d Dashboard) Queries() []Query {
	var out []Query
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					out = append(out, Query{Panel: p.Title, Expr: t.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// GrafanaVars replaces the Grafana variables the dashboard uses by values
// Prometheus accepts, so a panel query can be run through its API.
func GrafanaVars(expr string) string {
	r := strings.NewReplacer(
		"$__rate_interval", "1m",
		"$__interval", "15s",
		"$__range", "1h",
		`"$instance"`, `".*"`,
		"${instance:regex}", ".*",
	)
	return r.Replace(expr)
}

// metricRE matches the project's and the SDK's metric names, plus `up`,
// which the scrape itself produces. Label names and values never start
// with these prefixes in the shipped files (the test of this package
// checks so by construction of the files, see monitoring_test.go).
var metricRE = regexp.MustCompile(`\b(?:syncbridge|temporal)_[a-zA-Z0-9_]+\b|\bup\{`)

// MetricNames returns the distinct metric names used in exprs, sorted.
func MetricNames(exprs ...string) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricRE.FindAllString(e, -1) {
			seen[strings.TrimSuffix(m, "{")] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// comparisonRE is an alert's trailing threshold, e.g. "> 0.05" or "== 0".
var comparisonRE = regexp.MustCompile(`\s*(?:>|<|>=|<=|==|!=)\s*(?:bool\s+)?[0-9.eE+-]+\s*$`)

// Operands splits an alert expression into the queries whose values it
// compares: top-level `and`/`or`/`unless` operands, each with its trailing
// threshold removed. Each operand must return data on a worker that
// drains; the whole expression may well be empty (not firing).
func Operands(expr string) []string {
	var out []string
	expr = strings.Join(strings.Fields(expr), " ")
	for _, part := range splitTopLevel(expr) {
		for prev := ""; part != prev; {
			prev = part
			part = strings.TrimSpace(comparisonRE.ReplaceAllString(part, ""))
			if strings.HasPrefix(part, "(") && matchingParen(part) == len(part)-1 {
				part = part[1 : len(part)-1]
			}
		}
		if sub := splitTopLevel(part); len(sub) > 1 {
			out = append(out, Operands(part)...)
			continue
		}
		out = append(out, part)
	}
	return out
}

func matchingParen(s string) int {
	depth := 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// splitTopLevel splits at the set operators outside parentheses, braces
// and brackets.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	fields := []string{" and ", " or ", " unless "}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '{', '[':
			depth++
			continue
		case ')', '}', ']':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		for _, f := range fields {
			if strings.HasPrefix(s[i:], f) {
				out = append(out, s[start:i])
				start = i + len(f)
				i = start - 1
				break
			}
		}
	}
	return append(out, s[start:])
}

// RepoRoot finds the repository root (the directory holding go.mod) from
// the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
