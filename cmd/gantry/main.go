// Command gantry takes containerized services from a release to a healthy
// environment, and back when they are not healthy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gantryhq/gantry/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	// The first Ctrl-C cancels the work; the engine then rolls back to a
	// consistent state before it exits. A second one kills at once, and
	// the next gantry recovers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
