package main

import (
	"fmt"
	"io"

	"github.com/nplus1/nplus1/metrics"
)

// printVersion writes "nplus1 version", "nplus1 --version": the build
// information nplus1_build_info carries on /metrics.
func printVersion(w io.Writer) {
	bi := metrics.Build()
	fmt.Fprintf(w, "nplus1 %s\n", bi.Version)
	fmt.Fprintf(w, "  commit:   %s\n", bi.Revision)
	fmt.Fprintf(w, "  go:       %s\n", bi.GoVersion)
	fmt.Fprintf(w, "  pg_query: %s (pg_query_go, the SQL parser behind the fingerprints)\n", bi.PgQueryVersion)
}
