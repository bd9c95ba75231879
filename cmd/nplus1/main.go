// Command nplus1 is a PostgreSQL wire-protocol proxy that reports the query
// patterns that hurt at scale. Run "nplus1 --help" for its commands, flags and
// exit codes.
//
// This package is wiring only: flags, environment, config file, signals, exit
// codes, and the HTTP listener. The work is done by the library packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx and starts a graceful shutdown;
	// stop then restores the default handling, so a second one ends the
	// process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(exitCode(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)))
}
