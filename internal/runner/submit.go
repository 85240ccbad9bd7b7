package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/runner/lineproto"
)

// ExitCanceled is the exit code Submit returns for a command canceled
// before it could report its own (130, as a shell reports SIGINT).
const ExitCanceled = 130

// ioDrainDelay bounds how long Submit waits, once the command has exited,
// for processes it left behind to close its stdout and stderr.
const ioDrainDelay = 2 * time.Second

// Submit runs opts.Command as a recorded run of opts.Experiment in
// opts.Workspace (see the package documentation for the steps) and returns
// the command's exit code.
//
// Returns:
//   - (code, nil): the command ran and exited with code (0 → run completed,
//     otherwise failed; canceled by ctx → run canceled) and everything was
//     recorded.
//   - (code, err wrapping ErrRecording): the command ran and exited with
//     code, but part of what it produced could not be recorded; err says
//     what was lost.
//   - (127, err): the command could not be started; the run is failed.
//   - (1, err): nothing ran: invalid options (ErrInvalidOptions), snapshot
//     refused (ErrTooLarge), or the hub refused or could not be reached
//     when creating the run.
//
// Canceling ctx forwards SIGINT to the command's process group, waits
// opts.GracePeriod, then sends SIGKILL; the run ends canceled and what the
// command printed and wrote under outputs/ is still recorded (recording
// does not use ctx's cancellation).
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := opts.withDefaults()
	s := &session{h: h, opts: &o, log: log, stdoutRaw: stdout, stderrRaw: stderr}
	s.stdout = lockedWriter{mu: &s.termMu, w: stdout}
	s.stderr = lockedWriter{mu: &s.termMu, w: stderr}
	return s.submit(ctx)
}

type session struct {
	h    Hub
	opts *Options
	log  *slog.Logger

	termMu               sync.Mutex
	stdout, stderr       io.Writer // locked
	stdoutRaw, stderrRaw io.Writer

	run *hub.Run
	// prepEnv is what Options.Prepare returned, added to the command's
	// environment.
	prepEnv []string
}

func (s *session) say(format string, args ...any) {
	fmt.Fprintf(s.stderr, "atelier: "+format+"\n", args...)
}

func (s *session) warn(format string, args ...any) {
	fmt.Fprintf(s.stderr, "atelier: warning: "+format+"\n", args...)
}

// hubCtx is the context of hub requests: not canceled with ctx, so a
// canceled run is still recorded.
func hubCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (s *session) submit(ctx context.Context) (int, error) {
	o := s.opts
	lim := Limits{MaxBytes: o.MaxSnapshotBytes, MaxFiles: o.MaxSnapshotFiles}

	// 1. Pack.
	snap, err := os.CreateTemp(o.TempDir, "atelier-snapshot-*.tar.gz")
	if err != nil {
		return 1, fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		snap.Close()
		os.Remove(snap.Name())
	}()
	snapInfo, err := snap.Stat()
	if err != nil {
		return 1, fmt.Errorf("snapshot: %w", err)
	}
	sum := sha256.New()
	st, err := pack(ctx, o.Dir, io.MultiWriter(snap, sum), lim, snapInfo)
	if err != nil {
		return 1, fmt.Errorf("directory %s: %w", o.Dir, err)
	}
	size, err := snap.Seek(0, io.SeekCurrent)
	if err != nil {
		return 1, fmt.Errorf("snapshot: %w", err)
	}
	digest := hex.EncodeToString(sum.Sum(nil))

	// 2. Create the run, upload the snapshot.
	hctx := hubCtx(ctx)
	cctx, cancel := context.WithTimeout(hctx, requestTimeout)
	run, err := s.h.CreateRun(cctx, o.Workspace, hub.RunCreate{
		Experiment: o.Experiment, Name: o.Name, Status: hub.StatusQueued,
		Command: o.Command, Params: o.Params, Tags: o.Tags,
	})
	cancel()
	if err != nil {
		return 1, fmt.Errorf("create run in %s/%s: %w", o.Workspace, o.Experiment, err)
	}
	s.run = run
	s.log.Info("run created", "workspace", o.Workspace, "run", run.ID, "snapshot_sha256", digest)
	s.say("run %s created in %s/%s (snapshot %s: %d files, %s)", run.ID, o.Workspace, o.Experiment, digest[:12], st.Files, formatBytes(size))

	// The snapshot upload is the one long request before the command
	// starts; Ctrl-C interrupts it (and the run is recorded canceled).
	err = s.retry(ctx, "upload snapshot", 3, func(ctx context.Context) error {
		// A SectionReader, not the *os.File: an HTTP client closes a
		// request body that is an io.Closer, and the file is still needed.
		var r io.Reader = io.NewSectionReader(snap, 0, size)
		if s.showProgress() {
			pr := &progressReader{r: r, total: size, name: "snapshot", w: s.stderr, start: time.Now()}
			defer pr.done()
			r = pr
		}
		_, err := s.h.PutSnapshot(ctx, o.Workspace, run.ID, r, size)
		return err
	})
	if err != nil {
		return s.abort(ctx, fmt.Errorf("upload snapshot: %w", err))
	}

	// 3. A fresh copy of exactly what was recorded.
	work, err := os.MkdirTemp(o.TempDir, "atelier-run-*")
	if err != nil {
		return s.abort(ctx, fmt.Errorf("working copy: %w", err))
	}
	if o.KeepWorkDir {
		s.say("working copy kept at %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := Extract(ctx, io.NewSectionReader(snap, 0, size), work, Limits{}); err != nil {
		return s.abort(ctx, fmt.Errorf("working copy: %w", err))
	}
	if o.Prepare != nil {
		if s.prepEnv, err = o.Prepare(ctx, work); err != nil {
			return s.abort(ctx, fmt.Errorf("prepare working copy: %w", err))
		}
	}
	err = s.retry(ctx, "set run running", 3, func(ctx context.Context) error {
		_, err := s.h.UpdateRun(ctx, o.Workspace, run.ID, hub.RunUpdate{Status: hub.StatusRunning})
		return err
	})
	if err != nil {
		return s.abort(ctx, fmt.Errorf("set run running: %w", err))
	}

	// 4. Run, streaming.
	rec := newRecorder(s.h, o.Workspace, run.ID, o, s.log, s.warn)
	stop := make(chan struct{})
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		rec.run(hctx, stop)
	}()
	code, upd, startErr := s.execute(ctx, work, rec)
	close(stop)
	<-recDone
	recErr := rec.drain(hctx, time.Now().Add(o.FinalFlushTimeout))

	// 5. Outputs, then the final status (a log follower stops at it).
	artErr := s.uploadOutputs(ctx, work)
	finErr := s.finish(ctx, upd, nil)
	switch upd.Status {
	case hub.StatusCompleted:
		s.say("run %s completed", run.ID)
	case hub.StatusCanceled:
		s.say("run %s canceled (exit %d)", run.ID, code)
	default:
		s.say("run %s failed (exit %d)", run.ID, code)
	}
	if startErr != nil {
		return code, errors.Join(startErr, recErr, artErr, finErr)
	}
	return code, errors.Join(recErr, artErr, finErr)
}

// abort ends the run after a setup error, before the command started:
// canceled (exit code ExitCanceled) when ctx is done, failed (1) otherwise.
func (s *session) abort(ctx context.Context, err error) (int, error) {
	if ctx.Err() != nil {
		s.say("run %s canceled before the command started", s.run.ID)
		return ExitCanceled, s.finish(ctx, hub.RunUpdate{Status: hub.StatusCanceled, Error: "canceled before the command started"}, ctx.Err())
	}
	one := 1
	return 1, s.finish(ctx, hub.RunUpdate{Status: hub.StatusFailed, ExitCode: &one, Error: err.Error()}, err)
}

// finish sets the final status; cause, when not nil, is returned joined
// with any failure to record the status.
func (s *session) finish(ctx context.Context, u hub.RunUpdate, cause error) error {
	err := s.retry(hubCtx(ctx), "set final status", 5, func(ctx context.Context) error {
		_, err := s.h.UpdateRun(ctx, s.opts.Workspace, s.run.ID, u)
		return err
	})
	if err != nil {
		err = fmt.Errorf("%w: set run %s %s: %w", ErrRecording, s.run.ID, u.Status, err)
	}
	return errors.Join(cause, err)
}

// retry calls fn up to attempts times while the hub is unreachable, with
// backoff; a refusal, or ctx being done, ends it at once. Pass
// hubCtx(ctx) for requests that must go through even after a cancel.
func (s *session) retry(ctx context.Context, what string, attempts int, fn func(context.Context) error) error {
	backoff := 200 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err = fn(cctx)
		cancel()
		if err == nil || permanent(err) || ctx.Err() != nil {
			return err
		}
		s.log.Debug("hub request failed", "what", what, "attempt", i+1, "err", err)
		if i < attempts-1 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
	}
	return err
}

// Env returns the ATELIER_* variables Submit gives the command of run id:
// ATELIER_HUB, ATELIER_WORKSPACE, ATELIER_EXPERIMENT, ATELIER_RUN_ID and
// ATELIER_PARAM_<NAME> for each param, NAME being the key upper-cased with
// every character outside A-Z and 0-9 replaced by '_'. The result is
// sorted by variable name.
func Env(opts *Options, id string) []string {
	env := []string{
		"ATELIER_EXPERIMENT=" + opts.Experiment,
		"ATELIER_HUB=" + opts.HubURL,
	}
	for k, v := range opts.Params {
		env = append(env, ParamEnvName(k)+"="+v)
	}
	env = append(env, "ATELIER_RUN_ID="+id, "ATELIER_WORKSPACE="+opts.Workspace)
	sortEnv(env)
	return env
}

func sortEnv(env []string) {
	// Insertion sort: a handful of entries.
	for i := 1; i < len(env); i++ {
		for j := i; j > 0 && env[j] < env[j-1]; j-- {
			env[j], env[j-1] = env[j-1], env[j]
		}
	}
}

// ParamEnvName is the environment variable that carries param key to the
// command: "learning-rate" → "ATELIER_PARAM_LEARNING_RATE".
func ParamEnvName(key string) string {
	var b strings.Builder
	b.WriteString("ATELIER_PARAM_")
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// mergeEnv returns base with the variables of extra set (replacing any
// with the same name).
func mergeEnv(base, extra []string) []string {
	names := map[string]bool{}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		names[k] = true
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !names[k] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// execute runs the command in work and returns its exit code, the final
// status to record, and the start error if it could not start.
func (s *session) execute(ctx context.Context, work string, rec *recorder) (int, hub.RunUpdate, error) {
	o := s.opts
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Dir = work
	base := o.Env
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = mergeEnv(base, append(append([]string(nil), s.prepEnv...), Env(o, s.run.ID)...))
	setProcessGroup(cmd)
	cmd.WaitDelay = ioDrainDelay

	var lineNo int64 // stdout lines, for warnings
	steps := map[string]int64{}
	outSplit := &lineSplitter{term: s.stdout, max: o.MaxLineBytes}
	outSplit.onLine = func(text string, continued bool) {
		n := atomic.AddInt64(&lineNo, 1)
		rec.addLine(hub.LogLine{Stream: hub.Stdout, Time: time.Now().UTC(), Text: text})
		if continued || !lineproto.IsDirective(text) {
			return
		}
		d, _, err := lineproto.Parse(text)
		if err != nil {
			s.warn("stdout line %d: %v", n, err)
			return
		}
		switch d.Kind {
		case lineproto.Metric:
			step := steps[d.Name]
			if d.HasStep {
				step = d.Step
			}
			steps[d.Name]++
			rec.addPoint(hub.MetricPoint{Name: d.Name, Value: d.Num, Step: step, Time: time.Now().UTC()})
		case lineproto.Param:
			rec.addParam(d.Name, d.Value)
		case lineproto.Tag:
			rec.addTag(d.Name, d.Value)
		}
	}
	errSplit := &lineSplitter{term: s.stderr, max: o.MaxLineBytes, onLine: func(text string, _ bool) {
		rec.addLine(hub.LogLine{Stream: hub.Stderr, Time: time.Now().UTC(), Text: text})
	}}
	cmd.Stdout, cmd.Stderr = outSplit, errSplit

	if err := cmd.Start(); err != nil {
		code := ExitCannotStart
		err = fmt.Errorf("start %q: %w", o.Command[0], err)
		rec.addLine(hub.LogLine{Stream: hub.Stderr, Time: time.Now().UTC(), Text: "atelier: " + err.Error()})
		return code, hub.RunUpdate{Status: hub.StatusFailed, ExitCode: &code, Error: err.Error()}, err
	}
	s.log.Debug("command started", "run", s.run.ID, "pid", cmd.Process.Pid, "dir", work)

	done := make(chan struct{})
	var canceled atomic.Bool
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		canceled.Store(true)
		s.say("canceling run %s: SIGINT to the command, SIGKILL in %s", s.run.ID, o.GracePeriod)
		_ = interruptGroup(cmd)
		t := time.NewTimer(o.GracePeriod)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.say("grace period over; killing the command")
			_ = killGroup(cmd)
		}
	}()
	waitErr := cmd.Wait()
	close(done)
	outSplit.Close()
	errSplit.Close()

	if cmd.ProcessState == nil {
		code := 1
		return code, hub.RunUpdate{Status: hub.StatusFailed, ExitCode: &code, Error: waitErr.Error()}, waitErr
	}
	code := cmd.ProcessState.ExitCode()
	var reason string
	if c, sig, ok := signalExit(cmd); ok {
		code, reason = c, "killed by signal "+sig
	}
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		// Processes the command left behind hold its stdout or stderr:
		// the run is over, so they go too.
		_ = killGroup(cmd)
		s.warn("processes started by the command were still running %s after it exited; killed them", ioDrainDelay)
	}
	switch {
	case canceled.Load():
		return code, hub.RunUpdate{Status: hub.StatusCanceled, ExitCode: &code, Error: "canceled"}, nil
	case code == 0:
		return 0, hub.RunUpdate{Status: hub.StatusCompleted, ExitCode: &code}, nil
	default:
		if reason == "" {
			reason = fmt.Sprintf("exit status %d", code)
		}
		return code, hub.RunUpdate{Status: hub.StatusFailed, ExitCode: &code, Error: reason}, nil
	}
}
