package runner

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// Submit runs opts.Command as a recorded run of opts.Experiment in
// opts.Workspace (see the package documentation for the steps) and returns
// the command's exit code.
//
// Returns:
//   - (code, nil): the command ran and exited with code (0 → run completed,
//     otherwise failed; canceled by ctx → run canceled, code 130) and
//     everything was recorded.
//   - (code, err wrapping ErrRecording): the command ran and exited with
//     code, but part of what it produced could not be recorded; err says
//     what was lost.
//   - (127, err): the command could not be started; the run is failed.
//   - (1, err): nothing ran: invalid options (ErrInvalidOptions), snapshot
//     refused (ErrTooLarge), or the hub refused or could not be reached
//     when creating the run.
//
// The CLI should print err when it is not nil and exit with code.
// stdout and stderr receive the command's output as it is produced, plus
// status lines and warnings on stderr; Submit serializes its own writes
// with the command's. Submit is safe to call concurrently with distinct
// Options.
func Submit(ctx context.Context, h Hub, opts Options, stdout, stderr io.Writer, log *slog.Logger) (int, error) {
	if err := opts.Validate(); err != nil {
		return 1, err
	}
	return 1, errors.New("runner: not implemented yet")
}
