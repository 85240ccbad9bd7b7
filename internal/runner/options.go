package runner

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// Hub is what Submit needs from the hub. hub/client.*Client satisfies it.
// Implementations must be safe for concurrent use, and errors should wrap
// the hub error classes (hub.ErrInvalid, hub.ErrNotFound, hub.ErrConflict,
// hub.ErrTooLarge) so Submit can tell a refused request (not retried) from
// an unreachable hub (retried with backoff).
type Hub interface {
	CreateRun(ctx context.Context, ws string, rc hub.RunCreate) (*hub.Run, error)
	UpdateRun(ctx context.Context, ws, id string, u hub.RunUpdate) (*hub.Run, error)
	SetParams(ctx context.Context, ws, id string, params map[string]string) error
	SetTags(ctx context.Context, ws, id string, tags map[string]string) error
	LogMetrics(ctx context.Context, ws, id string, pts []hub.MetricPoint) error
	AppendLogs(ctx context.Context, ws, id string, lines []hub.LogLine) error
	PutArtifact(ctx context.Context, ws, id, path string, r io.Reader, size int64) (*hub.Artifact, error)
	PutSnapshot(ctx context.Context, ws, id string, r io.Reader, size int64) (*hub.Blob, error)
}

// Default limits and intervals; a zero field of Options takes these.
const (
	DefaultMaxSnapshotBytes = 300 << 20
	DefaultMaxSnapshotFiles = 2000
	DefaultMaxLineBytes     = hub.MaxLogLine // 64 KiB
	DefaultLogFlushInterval = 200 * time.Millisecond
	DefaultLogFlushLines    = 500
	DefaultMetricInterval   = 500 * time.Millisecond
	DefaultMetricPoints     = 1000
	DefaultGracePeriod      = 10 * time.Second
	DefaultFinalFlush       = 30 * time.Second
	DefaultMaxBackoff       = 10 * time.Second
	DefaultMaxBuffered      = 1_000_000
	// ExitCannotStart is the exit code Submit returns when the command
	// cannot be started (not found, not executable), like a shell does.
	ExitCannotStart = 127
)

// Options says what to submit and how. Only Workspace, Experiment and
// Command are required; zero values take the defaults above. Options is
// read-only once passed to Submit.
type Options struct {
	Workspace  string
	Experiment string
	Name       string            // optional run name
	Dir        string            // directory to snapshot; default "."
	Command    []string          // program and arguments; Command[0] is looked up in PATH unless it contains a '/'
	Params     map[string]string // --param k=v: recorded at creation and exported as ATELIER_PARAM_<K>
	Tags       map[string]string // --tag k=v
	HubURL     string            // exported to the command as ATELIER_HUB

	// Env is the base environment of the command; nil means os.Environ().
	// The ATELIER_* variables are appended to it and win over any it has.
	Env []string
	// TempDir is where the snapshot file and the working copy are made;
	// empty means os.TempDir(). Both are removed when Submit returns
	// unless KeepWorkDir is set.
	TempDir     string
	KeepWorkDir bool

	MaxSnapshotBytes int64 // default 300 MB
	MaxSnapshotFiles int   // default 2,000 (regular files and symlinks)
	MaxLineBytes     int   // a longer line is split into chunks of this size; default 64 KiB

	LogFlushInterval    time.Duration // default 200 ms
	LogFlushLines       int           // default 500
	MetricFlushInterval time.Duration // default 500 ms
	MetricFlushPoints   int           // default 1,000
	// GracePeriod is how long a canceled command has between the forwarded
	// SIGINT and SIGKILL; default 10 s.
	GracePeriod time.Duration
	// FinalFlushTimeout bounds the retries of what is still buffered once
	// the command has exited; default 30 s.
	FinalFlushTimeout time.Duration
	// MaxBackoff caps the retry backoff while the hub is unreachable;
	// default 10 s.
	MaxBackoff time.Duration
	// MaxBuffered caps the log lines and, separately, the metric points
	// held while the hub is unreachable; beyond it the oldest are dropped
	// and counted in the final report. Default 1,000,000.
	MaxBuffered int

	// Prepare, when set, is called with the working copy's directory once
	// the snapshot is extracted, before the command starts (to put input
	// files there); the NAME=VALUE variables it returns are added to the
	// command's environment. An error fails the run before the command
	// starts.
	Prepare func(ctx context.Context, work string) ([]string, error)

	// Progress forces (true) or suppresses (false) upload progress on
	// stderr; nil means "when stderr is a terminal".
	Progress *bool
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.Dir == "" {
		c.Dir = "."
	}
	setDefault(&c.MaxSnapshotBytes, DefaultMaxSnapshotBytes)
	setDefault(&c.MaxSnapshotFiles, DefaultMaxSnapshotFiles)
	setDefault(&c.MaxLineBytes, DefaultMaxLineBytes)
	setDefault(&c.LogFlushInterval, DefaultLogFlushInterval)
	setDefault(&c.LogFlushLines, DefaultLogFlushLines)
	setDefault(&c.MetricFlushInterval, DefaultMetricInterval)
	setDefault(&c.MetricFlushPoints, DefaultMetricPoints)
	setDefault(&c.GracePeriod, DefaultGracePeriod)
	setDefault(&c.FinalFlushTimeout, DefaultFinalFlush)
	setDefault(&c.MaxBackoff, DefaultMaxBackoff)
	setDefault(&c.MaxBuffered, DefaultMaxBuffered)
	return c
}

func setDefault[T int | int64 | time.Duration](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}

// Validate reports the first problem with o, naming the field. The error
// wraps ErrInvalidOptions.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidOptions)
	}
	if err := hub.CheckName("workspace", o.Workspace); err != nil {
		return bad("workspace: %v", err)
	}
	if err := hub.CheckName("experiment", o.Experiment); err != nil {
		return bad("experiment: %v", err)
	}
	if len(o.Name) > hub.MaxRunNameLn {
		return bad("name: %d bytes exceeds the limit of %d", len(o.Name), hub.MaxRunNameLn)
	}
	if len(o.Command) == 0 || o.Command[0] == "" {
		return bad("command: empty; give the program to run after --")
	}
	for k, v := range o.Params {
		if err := hub.CheckKey("param", k); err != nil {
			return bad("param: %v", err)
		}
		if err := hub.CheckValue("param", k, v); err != nil {
			return bad("param: %v", err)
		}
	}
	for k, v := range o.Tags {
		if err := hub.CheckKey("tag", k); err != nil {
			return bad("tag: %v", err)
		}
		if err := hub.CheckValue("tag", k, v); err != nil {
			return bad("tag: %v", err)
		}
	}
	if o.MaxLineBytes < 0 || (o.MaxLineBytes > 0 && o.MaxLineBytes < 16) {
		return bad("max line bytes: %d is below the minimum of 16", o.MaxLineBytes)
	}
	return nil
}
