package docscheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/config"
)

const repo = "../.."

var (
	configurationDoc = filepath.Join(repo, "docs", "configuration.md")
	// envName is a variable of this project's families; the other names
	// a Go file touches (PATH, HOME, the Web UI's TEMPORAL_* settings set
	// for child processes) are not read by syncbridge and not checked.
	envName = regexp.MustCompile(`^(SYNCBRIDGE|ROCKETMQ|POLARDB|TEMPORAL|ALIBABA)_[A-Z0-9_]+$`)
	// backticked finds the backticked variable names of a table cell.
	backticked = regexp.MustCompile("`((?:SYNCBRIDGE|ROCKETMQ|POLARDB|TEMPORAL|ALIBABA)_[A-Z0-9_]+)`")
)

const (
	varsHeading = "Environment variables"
	testHeading = "Variables for tests and benchmarks"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docRows returns the rows of the table under heading in
// docs/configuration.md as name -> cells, and the names in order.
func docRows(t *testing.T, heading string) (map[string][]string, []string) {
	t.Helper()
	rows := Table(readFile(t, configurationDoc), heading)
	if len(rows) < 2 || len(rows[0]) < 3 || rows[0][0] != "variable" || rows[0][1] != "default" {
		t.Fatalf("docs/configuration.md: no | variable | default | meaning | table under %q", heading)
	}
	byName := map[string][]string{}
	var order []string
	for _, r := range rows[1:] {
		m := backticked.FindStringSubmatch(r[0])
		if m == nil || m[0] != r[0] {
			t.Errorf("docs/configuration.md (%s): first cell %q is not one backticked variable", heading, r[0])
			continue
		}
		if _, dup := byName[m[1]]; dup {
			t.Errorf("docs/configuration.md (%s): %s has two rows", heading, m[1])
		}
		byName[m[1]] = r
		order = append(order, m[1])
	}
	return byName, order
}

// Every variable the configuration reads (config.Vars) has a row, in the
// same order, stating its default; every row is such a variable. A
// variable without a default says so in words ("required", "empty"),
// never as a backticked value a reader would take for one.
func TestConfigurationDocumentsEveryVariable(t *testing.T) {
	rows, order := docRows(t, varsHeading)
	var want []string
	for _, v := range config.Vars {
		want = append(want, v.Name)
		row, ok := rows[v.Name]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md has no row for %s (config.Vars)", v.Name)
		case v.Default != "" && row[1] != "`"+v.Default+"`":
			t.Errorf("docs/configuration.md: %s's default is %q, config.Vars says `%s`", v.Name, row[1], v.Default)
		case v.Default == "" && strings.HasPrefix(row[1], "`"):
			t.Errorf("docs/configuration.md: %s has no default in config.Vars, the table says %s", v.Name, row[1])
		}
	}
	for name := range rows {
		if !slices.Contains(want, name) {
			t.Errorf("docs/configuration.md documents %s, which config.Vars does not list (not read)", name)
		}
	}
	if !t.Failed() && !slices.Equal(order, want) {
		for i := range order {
			if order[i] != want[i] {
				t.Errorf("docs/configuration.md lists %s where config.Vars has %s: keep the table in config.Vars order", order[i], want[i])
				break
			}
		}
	}
}

// envReads scans every Go file of the repository for the variables it
// reads: the argument of a call to Getenv, LookupEnv or getenv (a string,
// or a constant holding one), and in internal/config every variable name
// the loader's code spells out (its reads go through helpers taking the
// name), leaving out the Vars table itself.
func envReads(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	consts := map[string][]string{} // constant name -> string values
	type call struct {
		arg  ast.Expr
		file string
	}
	var calls []call
	reads := map[string][]string{} // variable -> files reading it
	add := func(name, file string) {
		if envName.MatchString(name) && !slices.Contains(reads[name], file) {
			reads[name] = append(reads[name], file)
		}
	}
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != repo && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		inConfig := filepath.Dir(rel) == filepath.Join("internal", "config") && !strings.HasSuffix(rel, "_test.go")
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				if inConfig && len(n.Names) == 1 && n.Names[0].Name == "Vars" {
					return false // the documentation table, not a read
				}
				for i, name := range n.Names {
					if i < len(n.Values) {
						if s, ok := stringLit(n.Values[i]); ok {
							consts[name.Name] = append(consts[name.Name], s)
						}
					}
				}
			case *ast.CallExpr:
				var fn string
				switch f := n.Fun.(type) {
				case *ast.Ident:
					fn = f.Name
				case *ast.SelectorExpr:
					fn = f.Sel.Name
				}
				if (fn == "Getenv" || fn == "LookupEnv" || fn == "getenv") && len(n.Args) == 1 {
					calls = append(calls, call{n.Args[0], rel})
				}
			case *ast.BasicLit:
				if s, ok := stringLit(n); ok && inConfig {
					add(s, rel)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		switch a := c.arg.(type) {
		case *ast.BasicLit:
			if s, ok := stringLit(a); ok {
				add(s, c.file)
			}
		case *ast.Ident:
			for _, s := range consts[a.Name] {
				add(s, c.file)
			}
		case *ast.SelectorExpr:
			for _, s := range consts[a.Sel.Name] {
				add(s, c.file)
			}
		}
	}
	return reads
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// Every variable the code reads is documented: the configuration's in the
// first table (secrets also as NAME_FILE), the test harness's and the
// benchmarks' in the second; and every row of either is read somewhere.
func TestEveryVariableReadIsDocumented(t *testing.T) {
	reads := envReads(t)
	if len(reads) < len(config.Vars) {
		t.Fatalf("the scan found %d variables read, fewer than config.Vars lists: it is broken", len(reads))
	}
	configRows, _ := docRows(t, varsHeading)
	testRows, _ := docRows(t, testHeading)
	secret := map[string]bool{}
	for _, v := range config.Vars {
		secret[v.Name] = v.Secret
	}
	for name, files := range reads {
		base, isFile := strings.CutSuffix(name, "_FILE")
		switch {
		case configRows[name] != nil, testRows[name] != nil:
		case isFile && secret[base] && configRows[base] != nil:
		default:
			t.Errorf("%s is read (%s) but not documented in docs/configuration.md", name, strings.Join(files, ", "))
		}
	}
	for name := range configRows {
		if reads[name] == nil {
			t.Errorf("docs/configuration.md documents %s, which no code reads", name)
		}
	}
	for name := range testRows {
		switch {
		case reads[name] == nil:
			t.Errorf("docs/configuration.md (%s) documents %s, which no code reads", testHeading, name)
		case configRows[name] != nil:
			t.Errorf("%s is in both tables of docs/configuration.md", name)
		}
	}
}

// docFiles are the Markdown files whose links must resolve: the README,
// docs/ and every other .md in the tree.
func docFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != repo && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(out, filepath.Join(repo, "README.md")) || !slices.Contains(out, configurationDoc) {
		t.Fatalf("the walk missed the README or docs/: %v", out)
	}
	return out
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// Every relative link lands: the file or directory exists, and an anchor
// names a heading of the target (GitHub's rules, repeats numbered).
func TestRelativeLinksResolve(t *testing.T) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := Anchors(readFile(t, path))
		anchors[path] = a
		return a
	}
	checked := 0
	for _, file := range docFiles(t) {
		rel, _ := filepath.Rel(repo, file)
		for _, l := range Links(readFile(t, file)) {
			if scheme.MatchString(l.Target) || l.Target == "" {
				continue
			}
			checked++
			p, frag, _ := strings.Cut(l.Target, "#")
			p, err := url.PathUnescape(p)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", rel, l.Line, l.Target, err)
				continue
			}
			target := file
			if p != "" {
				target = filepath.Join(filepath.Dir(file), filepath.FromSlash(p))
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: link %q: no such file or directory", rel, l.Line, l.Target)
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				t.Errorf("%s:%d: link %q: an anchor into a file that is not Markdown", rel, l.Line, l.Target)
				continue
			}
			if !anchorsOf(target)[frag] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", rel, l.Line, l.Target, filepath.Base(target), frag)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d relative links found: the link reader is broken", checked)
	}
}

// Tables elsewhere in docs/ that list variables (production.md's
// production notes) name only variables the code reads.
func TestVariableTablesNameReadVariables(t *testing.T) {
	configRows, _ := docRows(t, varsHeading)
	testRows, _ := docRows(t, testHeading)
	known := func(name string) bool {
		base, _ := strings.CutSuffix(name, "_FILE")
		return configRows[name] != nil || testRows[name] != nil || configRows[base] != nil
	}
	docs, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables := 0
	for _, file := range docs {
		md := readFile(t, file)
		for _, h := range Headings(md) {
			rows := Table(md, h.Text)
			if len(rows) == 0 || rows[0][0] != "variable" {
				continue
			}
			tables++
			for _, r := range rows[1:] {
				for _, m := range backticked.FindAllStringSubmatch(r[0], -1) {
					if !known(m[1]) {
						t.Errorf("%s (%s): %s is not a variable syncbridge reads", filepath.Base(file), h.Text, m[1])
					}
				}
			}
		}
	}
	if tables < 3 {
		t.Fatalf("found %d variable tables in docs/; configuration.md has two and production.md one", tables)
	}
}

// The README stays a five-minute read that starts with the two commands:
// the first runs the whole pipeline on a fresh machine, the second is the
// test command .ci/run calls.
func TestReadmeIsShortAndStartsWithTheCommands(t *testing.T) {
	readme := readFile(t, filepath.Join(repo, "README.md"))
	if n := strings.Count(readme, "\n"); n > 250 {
		t.Errorf("README.md has %d lines; keep it under 250 and move detail to docs/", n)
	}
	run := strings.Index(readme, "```sh\ngo build -o bin/ ./worker ./starter\nbin/worker -dev\n```\n")
	test := strings.Index(readme, "```sh\n./scripts/test.sh           # everything, as CI runs it\n")
	switch {
	case run < 0:
		t.Error("README.md lost its first command (go build, then bin/worker -dev)")
	case test < 0:
		t.Error("README.md lost its test command (./scripts/test.sh)")
	case test < run:
		t.Error("README.md: the run command must come first, then the test command")
	}
	ci := readFile(t, filepath.Join(repo, ".ci", "run"))
	if !strings.Contains(ci, "exec ./scripts/test.sh\n") {
		t.Error(".ci/run no longer runs the README's test command")
	}
}
