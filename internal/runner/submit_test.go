package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// onWrite, if set, is called with everything written so far.
	onWrite func(string)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.b.Write(p)
	all := s.b.String()
	fn := s.onWrite
	s.mu.Unlock()
	if fn != nil {
		fn(all)
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeTree creates files (path → content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testOptions(t *testing.T, dir string, cmd ...string) Options {
	return Options{
		Workspace: "ws", Experiment: "exp", Dir: dir, Command: cmd, HubURL: "http://hub.test",
		TempDir: t.TempDir(), MaxBackoff: 20 * time.Millisecond, FinalFlushTimeout: 5 * time.Second,
		LogFlushInterval: 10 * time.Millisecond, MetricFlushInterval: 10 * time.Millisecond,
	}
}

func TestSubmitCompleted(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"train.sh": `echo "start $ATELIER_RUN_ID $ATELIER_WORKSPACE $ATELIER_EXPERIMENT $ATELIER_HUB lr=$ATELIER_PARAM_LEARNING_RATE"
echo "::param name=optimizer value=\"adam w\""
echo "::tag name=stage value=dev"
echo "::metric name=loss value=0.9"
echo "::metric name=loss value=0.5"
echo "::metric name=loss value=0.25 step=10"
echo "::metric name=acc value=1e-1"
echo "oops" >&2
test ! -e secret.txt || echo "secret.txt leaked"
pwd > where.txt
mkdir -p outputs/sub
printf 'onnx' > outputs/model.onnx
printf 'x' > outputs/sub/b.txt
`,
		"secret.txt": "ignored",
		".gitignore": "secret.txt\n",
	})
	h := newMemHub()
	var stdout, stderr syncBuffer
	opts := testOptions(t, dir, "sh", "train.sh")
	opts.Params = map[string]string{"learning-rate": "0.01"}
	opts.Tags = map[string]string{"team": "a"}
	opts.Name = "first"
	code, err := Submit(context.Background(), h, opts, &stdout, &stderr, nil)
	if err != nil || code != 0 {
		t.Fatalf("Submit = %d, %v; stderr:\n%s", code, err, stderr.String())
	}
	if want := []hub.RunStatus{hub.StatusQueued, hub.StatusRunning, hub.StatusCompleted}; !reflect.DeepEqual(h.statuses, want) {
		t.Errorf("statuses = %v, want %v", h.statuses, want)
	}
	if h.run.ExitCode == nil || *h.run.ExitCode != 0 {
		t.Errorf("exit code = %v, want 0", h.run.ExitCode)
	}
	if !reflect.DeepEqual(h.run.Command, []string{"sh", "train.sh"}) || h.run.Name != "first" {
		t.Errorf("run = %+v", h.run)
	}
	wantParams := map[string]string{"learning-rate": "0.01", "optimizer": "adam w"}
	if !reflect.DeepEqual(h.run.Params, wantParams) {
		t.Errorf("params = %v, want %v", h.run.Params, wantParams)
	}
	if want := map[string]string{"team": "a", "stage": "dev"}; !reflect.DeepEqual(h.run.Tags, want) {
		t.Errorf("tags = %v, want %v", h.run.Tags, want)
	}
	type pt struct {
		name  string
		step  int64
		value float64
	}
	var got []pt
	for _, p := range h.points {
		if p.Time.IsZero() {
			t.Errorf("metric %s has no time", p.Name)
		}
		got = append(got, pt{p.Name, p.Step, p.Value})
	}
	want := []pt{{"loss", 0, 0.9}, {"loss", 1, 0.5}, {"loss", 10, 0.25}, {"acc", 0, 0.1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
	out := h.lines(hub.Stdout)
	if len(out) != 7 || out[0] != "start r1 ws exp http://hub.test lr=0.01" || out[1] != `::param name=optimizer value="adam w"` {
		t.Errorf("stdout log = %q", out)
	}
	if errs := h.lines(hub.Stderr); !reflect.DeepEqual(errs, []string{"oops"}) {
		t.Errorf("stderr log = %q", errs)
	}
	if !strings.Contains(stdout.String(), "start r1 ws exp") || !strings.HasPrefix(stdout.String(), "start r1") {
		t.Errorf("terminal stdout = %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "oops\n") || !strings.Contains(stderr.String(), "run r1 completed") {
		t.Errorf("terminal stderr = %q", stderr.String())
	}
	if want := map[string][]byte{"model.onnx": []byte("onnx"), "sub/b.txt": []byte("x")}; !reflect.DeepEqual(h.artifacts, want) {
		t.Errorf("artifacts = %q, want %q", h.artifacts, want)
	}
	// The command ran in a copy: nothing it wrote lands in dir.
	if _, err := os.Stat(filepath.Join(dir, "where.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command wrote into the submitted directory: %v", err)
	}
	// The recorded snapshot is the deterministic pack of dir.
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), dir, &buf, Limits{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), h.snapshot) {
		t.Errorf("uploaded snapshot (%d bytes) differs from Pack of the directory (%d bytes)", len(h.snapshot), buf.Len())
	}
	// Temp files are cleaned up.
	if left, _ := os.ReadDir(opts.TempDir); len(left) != 0 {
		t.Errorf("temp dir not cleaned: %v", left)
	}
}

func TestSubmitExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		cmd      []string
		code     int
		status   hub.RunStatus
		errLike  string // in Submit's error, "" for none
		runError string // in the run's error
	}{
		{"zero", []string{"true"}, 0, hub.StatusCompleted, "", ""},
		{"non-zero", []string{"sh", "-c", "exit 3"}, 3, hub.StatusFailed, "", "exit status 3"},
		{"killed by signal", []string{"sh", "-c", "kill -TERM $$"}, 143, hub.StatusFailed, "", "killed by signal terminated"},
		{"not found", []string{"no-such-program-atelier"}, 127, hub.StatusFailed, "no-such-program-atelier", "executable file not found"},
		{"not executable", []string{"./data.txt"}, 127, hub.StatusFailed, "permission denied", "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"data.txt": "x"})
			h := newMemHub()
			var stderr syncBuffer
			code, err := Submit(context.Background(), h, testOptions(t, dir, tc.cmd...), &syncBuffer{}, &stderr, nil)
			if code != tc.code {
				t.Errorf("code = %d, want %d (err %v)", code, tc.code, err)
			}
			if tc.errLike == "" && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			if tc.errLike != "" && (err == nil || !strings.Contains(err.Error(), tc.errLike)) {
				t.Errorf("err = %v, want one containing %q", err, tc.errLike)
			}
			if h.run.Status != tc.status || h.run.ExitCode == nil || *h.run.ExitCode != tc.code {
				t.Errorf("run status %s exit %v, want %s exit %d", h.run.Status, h.run.ExitCode, tc.status, tc.code)
			}
			if !strings.Contains(h.run.Error, tc.runError) {
				t.Errorf("run error %q does not contain %q", h.run.Error, tc.runError)
			}
		})
	}
}

func TestSubmitMalformedDirectiveWarns(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	var stderr syncBuffer
	code, err := Submit(context.Background(), h, testOptions(t, dir, "sh", "-c",
		`echo hello; echo '::metric name=loss value=abc'; echo '::metric name=loss value=1'; exit 0`), &syncBuffer{}, &stderr, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v", code, err)
	}
	if !strings.Contains(stderr.String(), `atelier: warning: stdout line 2: metric "loss": value "abc" is not a finite number`) {
		t.Errorf("stderr = %q, want a warning naming line 2", stderr.String())
	}
	if got := h.lines(hub.Stdout); !reflect.DeepEqual(got, []string{"hello", "::metric name=loss value=abc", "::metric name=loss value=1"}) {
		t.Errorf("stdout log = %q", got)
	}
	if len(h.points) != 1 || h.points[0].Value != 1 || h.points[0].Step != 0 {
		t.Errorf("points = %+v, want one point loss=1 step 0", h.points)
	}
}

func TestSubmitParamConflictIsAWarning(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	var stderr syncBuffer
	opts := testOptions(t, dir, "sh", "-c", `echo '::param name=lr value=0.5'; echo '::param name=lr value=0.1'`)
	opts.Params = map[string]string{"lr": "0.1"}
	code, err := Submit(context.Background(), h, opts, &syncBuffer{}, &stderr, nil)
	if code != 0 {
		t.Fatalf("code = %d", code)
	}
	if !errors.Is(err, ErrRecording) || !strings.Contains(err.Error(), `param "lr" is already "0.1"`) {
		t.Errorf("err = %v, want ErrRecording naming the param conflict", err)
	}
	if !strings.Contains(stderr.String(), `hub refused param "lr"`) {
		t.Errorf("stderr = %q", stderr.String())
	}
	if h.run.Status != hub.StatusCompleted || h.run.Params["lr"] != "0.1" {
		t.Errorf("run = %s params %v", h.run.Status, h.run.Params)
	}
}

func TestSubmitCancel(t *testing.T) {
	tests := []struct {
		name   string
		script string
		code   int
		log    string
	}{
		{"child exits on SIGINT", `trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.01; done`, 7, "got-int"},
		{"child ignores SIGINT and is killed", `trap '' INT; echo ready; while :; do sleep 0.01; done`, 137, "ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{})
			h := newMemHub()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stdout := &syncBuffer{onWrite: func(s string) {
				if strings.Contains(s, "ready") {
					cancel()
				}
			}}
			opts := testOptions(t, dir, "sh", "-c", tc.script+"\n")
			opts.GracePeriod = 200 * time.Millisecond
			var stderr syncBuffer
			code, err := Submit(ctx, h, opts, stdout, &stderr, nil)
			if err != nil || code != tc.code {
				t.Fatalf("Submit = %d, %v, want %d; stderr:\n%s", code, err, tc.code, stderr.String())
			}
			if h.run.Status != hub.StatusCanceled || *h.run.ExitCode != tc.code {
				t.Errorf("run %s exit %v, want canceled exit %d", h.run.Status, *h.run.ExitCode, tc.code)
			}
			if !slices.Contains(h.lines(hub.Stdout), tc.log) {
				t.Errorf("log %q misses %q", h.lines(hub.Stdout), tc.log)
			}
		})
	}
}

func TestSubmitHubOutageRecovers(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	h.failLogs.Store(3) // the first three log batches fail as unreachable
	var stderr syncBuffer
	code, err := Submit(context.Background(), h, testOptions(t, dir, "sh", "-c", `for i in 1 2 3 4 5; do echo line$i; done`), &syncBuffer{}, &stderr, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v", code, err)
	}
	if got, want := h.lines(hub.Stdout), []string{"line1", "line2", "line3", "line4", "line5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("log = %q, want %q", got, want)
	}
	if s := stderr.String(); !strings.Contains(s, "hub unreachable") || !strings.Contains(s, "hub reachable again") {
		t.Errorf("stderr = %q, want the outage and the recovery reported", s)
	}
}

func TestSubmitHubDownKeepsRunning(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	h.failAll.Store(true)
	opts := testOptions(t, dir, "sh", "-c", `echo '::metric name=m value=1'; echo done > marker; mkdir outputs; cp marker outputs/`)
	opts.FinalFlushTimeout = 100 * time.Millisecond
	code, err := Submit(context.Background(), h, opts, &syncBuffer{}, &syncBuffer{}, nil)
	if code != 0 {
		t.Fatalf("code = %d, want 0 (the command must run to completion)", code)
	}
	if !errors.Is(err, ErrRecording) || !strings.Contains(err.Error(), "1 log lines not recorded") ||
		!strings.Contains(err.Error(), "1 metric points not recorded") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want ErrRecording counting the lost line and point and naming the cause", err)
	}
	if h.run.Status != hub.StatusCompleted || string(h.artifacts["marker"]) != "done\n" {
		t.Errorf("run %s artifacts %q", h.run.Status, h.artifacts)
	}
}

func TestSubmitRefusesLargeSnapshot(t *testing.T) {
	tests := []struct {
		name    string
		limits  func(*Options)
		wantMsg []string
	}{
		{"files", func(o *Options) { o.MaxSnapshotFiles = 3 }, []string{
			"14 files exceed the limit of 3 files; biggest by file count: src/vendor/lib/ (10 files, 0 B), src/vendor/lib/a (0 B), src/vendor/lib/b (0 B), src/vendor/lib/c (0 B), src/vendor/lib/d (0 B); leave them out with .atelierignore",
		}},
		{"bytes", func(o *Options) { o.MaxSnapshotBytes = 100 }, []string{
			"207 B in 14 files exceeds the limit of 100 B; biggest by size: data/ (1 file, 200 B), data/big.bin (200 B); biggest files: data/big.bin (200 B), main.py (7 B), src/app.py (0 B)",
			".atelierignore",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The excess sits deep: src/vendor/lib/ holds most files,
			// data/big.bin most bytes.
			dir := writeTree(t, map[string]string{
				"main.py": "print()", "data/big.bin": strings.Repeat("x", 200), "src/app.py": "", "src/vendor/x": "",
				"src/vendor/lib/a": "", "src/vendor/lib/b": "", "src/vendor/lib/c": "", "src/vendor/lib/d": "", "src/vendor/lib/e": "",
				"src/vendor/lib/f": "", "src/vendor/lib/g": "", "src/vendor/lib/h": "", "src/vendor/lib/i": "", "src/vendor/lib/j": "",
			})
			h := newMemHub()
			opts := testOptions(t, dir, "true")
			tc.limits(&opts)
			code, err := Submit(context.Background(), h, opts, &syncBuffer{}, &syncBuffer{}, nil)
			if code != 1 || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Submit = %d, %v; want 1, ErrTooLarge", code, err)
			}
			for _, w := range tc.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if h.created {
				t.Error("a run was created for a refused snapshot")
			}
		})
	}
}

func TestSubmitInvalidOptions(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no command":    func(o *Options) { o.Command = nil },
		"bad workspace": func(o *Options) { o.Workspace = "-x" },
		"bad param key": func(o *Options) { o.Params = map[string]string{"a b": "1"} },
		"bad tag value": func(o *Options) { o.Tags = map[string]string{"a": strings.Repeat("x", hub.MaxValueLen+1)} },
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, t.TempDir(), "true")
			mod(&o)
			h := newMemHub()
			code, err := Submit(context.Background(), h, o, &syncBuffer{}, &syncBuffer{}, nil)
			if code != 1 || !errors.Is(err, ErrInvalidOptions) || h.created {
				t.Fatalf("Submit = %d, %v (created %v); want 1, ErrInvalidOptions", code, err, h.created)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	o := &Options{Workspace: "ws", Experiment: "e", HubURL: "http://h", Params: map[string]string{"lr": "0.1", "batch-size": "32", "a.b/c": "x"}}
	got := Env(o, "r9")
	want := []string{
		"ATELIER_EXPERIMENT=e", "ATELIER_HUB=http://h", "ATELIER_PARAM_A_B_C=x", "ATELIER_PARAM_BATCH_SIZE=32",
		"ATELIER_PARAM_LR=0.1", "ATELIER_RUN_ID=r9", "ATELIER_WORKSPACE=ws",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Env = %q\nwant %q", got, want)
	}
	merged := mergeEnv([]string{"PATH=/bin", "ATELIER_RUN_ID=old"}, got)
	if slices.Contains(merged, "ATELIER_RUN_ID=old") || !slices.Contains(merged, "PATH=/bin") {
		t.Errorf("mergeEnv = %q", merged)
	}
}

func TestSubmitCanceledDuringSnapshotUpload(t *testing.T) {
	dir := writeTree(t, map[string]string{"a": "x"})
	marker := filepath.Join(t.TempDir(), "ran")
	h := newMemHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.onSnapshot = func(reqCtx context.Context) error {
		cancel() // Ctrl-C while the snapshot uploads
		<-reqCtx.Done()
		return reqCtx.Err()
	}
	var stderr syncBuffer
	code, err := Submit(ctx, h, testOptions(t, dir, "touch", marker), &syncBuffer{}, &stderr, nil)
	if code != ExitCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit = %d, %v; want %d, context.Canceled", code, err, ExitCanceled)
	}
	if h.run.Status != hub.StatusCanceled {
		t.Errorf("run status %s, want canceled", h.run.Status)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command ran after a cancel during the upload: %v", err)
	}
	if !strings.Contains(stderr.String(), "canceled before the command started") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestSubmitBufferOverflowIsCounted(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	h.failAll.Store(true)
	opts := testOptions(t, dir, "sh", "-c", `i=0; while [ $i -lt 10 ]; do echo line$i; echo "::metric name=m value=$i"; i=$((i+1)); done`)
	opts.MaxBuffered = 4
	opts.FinalFlushTimeout = 50 * time.Millisecond
	code, err := Submit(context.Background(), h, opts, &syncBuffer{}, &syncBuffer{}, nil)
	if code != 0 {
		t.Fatalf("code = %d", code)
	}
	// 20 stdout lines and 10 points, of which at most 4 of each are held:
	// everything is reported lost, none silently.
	if !errors.Is(err, ErrRecording) || !strings.Contains(err.Error(), "20 log lines not recorded") || !strings.Contains(err.Error(), "10 metric points not recorded") {
		t.Errorf("err = %v, want 20 lines and 10 points reported lost", err)
	}
}

func TestSubmitKillsLeftoverProcesses(t *testing.T) {
	dir := writeTree(t, map[string]string{})
	h := newMemHub()
	var stdout, stderr syncBuffer
	code, err := Submit(context.Background(), h, testOptions(t, dir, "sh", "-c", "sleep 60 & echo $!"), &stdout, &stderr, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v", code, err)
	}
	if !strings.Contains(stderr.String(), "were still running 2s after it exited; killed them") {
		t.Errorf("stderr = %q", stderr.String())
	}
	// SIGKILL is delivered asynchronously: wait (bounded) for the process
	// to be gone, or a zombie nobody has reaped yet (PID 1 in a container).
	pid := strings.TrimSpace(stdout.String())
	deadline := time.Now().Add(30 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftover process %s still running: %s", pid, stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSubmitTempDirInsideDir(t *testing.T) {
	dir := writeTree(t, map[string]string{"main.py": "x"})
	h := newMemHub()
	opts := testOptions(t, dir, "find", ".", "-type", "f")
	opts.TempDir = filepath.Join(dir, "tmp")
	if err := os.Mkdir(opts.TempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout syncBuffer
	code, err := Submit(context.Background(), h, opts, &stdout, &syncBuffer{}, nil)
	if code != 0 || err != nil {
		t.Fatalf("Submit = %d, %v", code, err)
	}
	// The snapshot being written is not packed into itself.
	if got := h.lines(hub.Stdout); !reflect.DeepEqual(got, []string{"./main.py"}) {
		t.Errorf("working copy holds files %q, want only ./main.py", got)
	}
}
