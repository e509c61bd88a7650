package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/syncbridge/syncbridge/internal/config"
)

// usage is `worker -h`: the flags (dev stack only), then where the real
// configuration lives. Without the second part an operator reading -h
// would think the flags are all there is.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: worker [-dev [dev flags]]\n\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nStop with SIGTERM or Ctrl-C: polling stops, in-flight activities finish. Exit 0\nafter a clean stop, 1 on a configuration or start error.\n")
	fmt.Fprintf(w, "\nWithout -dev the worker is configured by environment variables only (secrets\nalso as NAME_FILE); docs/configuration.md documents each:\n\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, v := range config.Vars {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Doc)
	}
	tw.Flush()
}
