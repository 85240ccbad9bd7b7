package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/atelier-ml/atelier/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal cancels ctx, stop relaying: a second
		// signal then gets the default action and ends the process at once.
		<-ctx.Done()
		stop()
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv, log)
	stop()
	os.Exit(code)
}
