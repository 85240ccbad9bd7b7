package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/atelier-ml/atelier/internal/agentcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful shutdown, stop relaying:
		// a second signal gets the default action and ends the process.
		<-ctx.Done()
		stop()
	}()
	code := agentcmd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
