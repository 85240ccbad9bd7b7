package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// New returns the root command. stdout gets what a user or a script reads
// (the listen address); logs go to stderr.
func New(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "atelier-agent",
		Short:         "Atelier's device and host agent: serves models over HTTP",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newScoreCmd(stdout, stderr, getenv))
	root.AddCommand(newRunCmd(stdout, stderr, getenv))
	root.AddCommand(newFPGACmd(stdout, stderr))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", errUsage, err) })
	return root
}

// Main runs the command tree with args and returns the exit code: 0, 1 on
// a failure, 2 on a bad command line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := New(stdout, stderr, getenv)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "atelier-agent:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func newLogger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	s, _ := cmd.Flags().GetString("log-level")
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, s)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}
