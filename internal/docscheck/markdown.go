// Package docscheck keeps the documentation true to the code: its tests
// compare docs/configuration.md with the variables the code reads, and
// resolve every relative link (anchors included) of the README and docs/.
// The docs are written by hand and the code moves under them; without a
// test, a renamed heading or a new variable is found by a reader, late.
//
// This file reads the little Markdown the checks need, the way GitHub
// renders it: ATX headings and their anchors, inline links, pipe tables,
// all outside fenced code blocks.
package docscheck

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Heading is an ATX heading ("## Text") outside code blocks.
type Heading struct {
	Level int
	Text  string
	Line  int // 1-based
}

// Link is an inline link or image target, [text](target).
type Link struct {
	Target string
	Line   int // 1-based line of the "](" that starts the target
}

// prose returns the lines of md with fenced code blocks blanked out, so
// line numbers stay those of the file.
func prose(md string) []string {
	lines := strings.Split(md, "\n")
	fence := ""
	for i, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case fence != "":
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			lines[i] = ""
		case strings.HasPrefix(t, "```"), strings.HasPrefix(t, "~~~"):
			fence = t[:3]
			lines[i] = ""
		}
	}
	return lines
}

var atx = regexp.MustCompile(`^(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)

// Headings lists the ATX headings of md in order.
func Headings(md string) []Heading {
	var hs []Heading
	for i, l := range prose(md) {
		if m := atx.FindStringSubmatch(l); m != nil {
			hs = append(hs, Heading{Level: len(m[1]), Text: m[2], Line: i + 1})
		}
	}
	return hs
}

var inlineLink = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s()<>]*)>?(?:\s+"[^"]*")?\s*\)`)

// Anchor is the fragment GitHub gives a heading: its text as rendered
// (link targets, code and emphasis markers dropped), lower-cased, with
// letters, digits, marks, "-" and "_" kept, each space made "-", and
// everything else removed.
func Anchor(heading string) string {
	text := inlineLink.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Anchors returns the fragments of every heading of md; a repeated heading
// gets "-1", "-2", ... after its first occurrence, as on GitHub.
func Anchors(md string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, h := range Headings(md) {
		a := Anchor(h.Text)
		if n := seen[a]; n > 0 {
			seen[a]++
			a += "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}

var codeSpan = regexp.MustCompile("`[^`]*`")

// Links lists the inline link and image targets of md, outside code
// blocks and code spans. Link text may wrap across lines.
func Links(md string) []Link {
	text := strings.Join(prose(md), "\n")
	// Code spans inside link text are kept (their brackets are text), so
	// only spans that are not part of a link's text are blanked: blank
	// each span's content but keep its length and newlines.
	text = codeSpan.ReplaceAllStringFunc(text, func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' || r == '`' {
				return r
			}
			if r == '[' || r == ']' || r == '(' || r == ')' {
				return ' '
			}
			return r
		}, s)
	})
	var out []Link
	for _, m := range inlineLink.FindAllStringSubmatchIndex(text, -1) {
		target := text[m[4]:m[5]]
		out = append(out, Link{Target: target, Line: 1 + strings.Count(text[:m[4]], "\n")})
	}
	return out
}

// Table returns the cells of the first pipe table after the heading with
// text heading (any level), header row first, the delimiter row left out.
// Cells are trimmed; an escaped pipe (\|) stays inside its cell.
func Table(md, heading string) [][]string {
	lines := prose(md)
	start := -1
	for _, h := range Headings(md) {
		if h.Text == heading {
			start = h.Line
			break
		}
	}
	if start < 0 {
		return nil
	}
	var rows [][]string
	for _, l := range lines[start:] {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, "|") {
			if len(rows) > 0 {
				break
			}
			if atx.MatchString(t) {
				return nil // the next section began: no table under heading
			}
			continue
		}
		t = strings.ReplaceAll(strings.Trim(t, "|"), `\|`, "\x00")
		var cells []string
		for _, c := range strings.Split(t, "|") {
			cells = append(cells, strings.TrimSpace(strings.ReplaceAll(c, "\x00", `\|`)))
		}
		if len(rows) == 1 && strings.Trim(strings.Join(cells, ""), "-: ") == "" {
			continue // the delimiter row
		}
		rows = append(rows, cells)
	}
	return rows
}
