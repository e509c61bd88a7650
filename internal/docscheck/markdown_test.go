package docscheck

import (
	"slices"
	"testing"
)

func TestAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		"Runbook: worker down or not ready":                   "runbook-worker-down-or-not-ready",
		"Reference stack: `docker compose up`":                "reference-stack-docker-compose-up",
		"Pollers: stop, restart, several pipelines":           "pollers-stop-restart-several-pipelines",
		"Temporal namespace: retention and search attributes": "temporal-namespace-retention-and-search-attributes",
		"Alibaba Cloud ECS: systemd":                          "alibaba-cloud-ecs-systemd",
		"See [the docs](docs/x.md) now":                       "see-the-docs-now",
		"Turning it on (once per cluster)":                    "turning-it-on-once-per-cluster",
		"SYNCBRIDGE_FLOOD_MODE and  two spaces":               "syncbridge_flood_mode-and--two-spaces",
		"Über ≤ 250 lines":                                    "über--250-lines",
	} {
		if got := Anchor(heading); got != want {
			t.Errorf("Anchor(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestAnchorsNumberRepeats(t *testing.T) {
	a := Anchors("# Notes\n\n## Notes\n\n```\n# not a heading\n```\n### Notes\n")
	for _, want := range []string{"notes", "notes-1", "notes-2"} {
		if !a[want] {
			t.Errorf("no anchor %q in %v", want, a)
		}
	}
	if a["not-a-heading"] {
		t.Error("a comment in a code block became a heading")
	}
}

func TestLinks(t *testing.T) {
	md := "See [a](a.md) and [wrapped\ntext](b.md#x), ![img](c.png \"title\").\n" +
		"`[code](not-a-link.md)` and [`code text`](d.md)\n" +
		"```\n[fenced](nope.md)\n```\n" +
		"[with [nested] text](e.md) [abs](https://example.com/f.md)\n"
	var got []string
	for _, l := range Links(md) {
		got = append(got, l.Target)
	}
	want := []string{"a.md", "b.md#x", "c.png", "d.md", "e.md", "https://example.com/f.md"}
	if !slices.Equal(got, want) {
		t.Errorf("Links = %q, want %q", got, want)
	}
	if l := Links(md)[1]; l.Line != 2 {
		t.Errorf("wrapped link reported on line %d, want 2 (where its target is)", l.Line)
	}
}

func TestTable(t *testing.T) {
	md := "# T\n\n## Vars\n\nText.\n\n| variable | default |\n|---|---|\n| `A` | `1` |\n| `B\\|C` | required |\n\nAfter.\n\n| other | table |\n|---|---|\n"
	got := Table(md, "Vars")
	want := [][]string{{"variable", "default"}, {"`A`", "`1`"}, {"`B\\|C`", "required"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Table = %q, want %q", got, want)
	}
	if Table(md, "T") != nil {
		t.Error("a heading followed by another heading before any table has no table")
	}
}
