package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/syncbridge/syncbridge/internal/store"
)

// tableListing is the `list` action of an operator table (quarantine,
// conflicts): rows filtered by status and key, oldest first, paged by ID,
// printed as a table or, with --json, as an array of T.
type tableListing[T any] struct {
	summary, synopsis, about string
	what                     string   // what the rows are, in the help: "rows", "conflicts"
	statuses                 []string // --status values, the default first; "all" lists every status
	none                     string   // the text for an empty page
	header                   string   // the table's header, tab-separated
	fetch                    func(ctx context.Context, st *store.Store, f pageFilter) ([]T, error)
	id                       func(T) int64  // for paging
	row                      func(T) string // the table line, tab-separated
}

// pageFilter is the listing's flags.
type pageFilter struct {
	status, key string
	limit       int
	after       int64 // rows with a greater ID
}

// storeStatus is the status filter as the store takes it ("" for all).
func (f pageFilter) storeStatus() string {
	if f.status == "all" {
		return ""
	}
	return f.status
}

func (l tableListing[T]) command() *command {
	return &command{
		name: "list", summary: l.summary, synopsis: l.synopsis, about: l.about,
		needs: needStore, listing: true,
		setup: func(fs *flags) runFunc {
			f := pageFilter{status: l.statuses[0]}
			fs.enumVar(&f.status, "status", "only "+l.what+" with this `STATUS`: "+strings.Join(l.statuses, ", "), l.statuses...)
			fs.StringVar(&f.key, "key", "", "only "+l.what+" of this `KEY`")
			fs.IntVar(&f.limit, "limit", 100, "at most `N` "+l.what)
			fs.Int64Var(&f.after, "after", 0, "only "+l.what+" with an ID above this `ID` (paging)")
			return func(ctx context.Context, e *env, _ []string) error { return l.run(ctx, e, f) }
		},
	}
}

// run writes one page: JSON, or a table (none when the page is empty). A
// full page says on stderr how to ask for the next.
func (l tableListing[T]) run(ctx context.Context, e *env, f pageFilter) error {
	items, err := l.fetch(ctx, e.st, f)
	if err != nil {
		return err
	}
	if n := len(items); n > 0 && n == f.limit {
		e.progress("(first %d %s; --after %d shows more)", n, l.what, l.id(items[n-1]))
	}
	return e.output(items, func() {
		if len(items) == 0 {
			e.printf("%s\n", l.none)
			return
		}
		e.table(func(w io.Writer) {
			fmt.Fprintln(w, l.header)
			for _, it := range items {
				fmt.Fprintln(w, l.row(it))
			}
		})
	})
}

// table writes tab-separated lines to stdout as aligned columns.
func (e *env) table(write func(w io.Writer)) { columns(e.stdout, write) }

// columns aligns the tab-separated lines write writes to w.
func columns(w io.Writer, write func(tw io.Writer)) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	write(tw)
	tw.Flush()
}

// mapAll converts every element of a slice; never nil, so an empty JSON
// listing is [] rather than null.
func mapAll[S, T any](in []S, f func(S) T) []T {
	out := make([]T, 0, len(in))
	for _, s := range in {
		out = append(out, f(s))
	}
	return out
}
