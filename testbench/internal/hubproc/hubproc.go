package hubproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/atelier-ml/atelier/hub/server"
)

// ModuleRoot returns the directory of the go.mod above the working
// directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the bench inside the module")
		}
		dir = parent
	}
}

// Build builds ./cmd/atelier into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	bins, err := BuildPackages(ctx, dir, "./cmd/atelier")
	if err != nil {
		return "", err
	}
	return bins[0], nil
}

// BuildPackages builds the main packages pkgs (import paths relative to the
// module root, such as ./cmd/atelier-agent) into dir with one go build and
// returns the binaries' paths in the order of pkgs; each binary is named
// after the last element of its package path.
func BuildPackages(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, errors.New("build: no packages")
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(pkgs, " "), root, err, out)
	}
	bins := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		bins[i] = filepath.Join(dir, path.Base(pkg))
	}
	return bins, nil
}

// Proc is a running child process: a hub (Start) or any other (Exec).
type Proc struct {
	// Addrs are a hub's bound addresses; zero for a process from Exec.
	Addrs  server.Addrs
	name   string // for errors: "hub", "agent", ...
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done is closed
	output *TailBuffer
}

// Start starts `atelier hub serve` on data, listening on addrs (use
// 127.0.0.1:0 for fresh ports; the same addresses again to restart a hub
// where agents expect it), with extra flags, and waits for its hub.addr.
// The process is not tied to ctx: Stop or Kill ends it.
func Start(ctx context.Context, bin, data string, addrs server.Addrs, extra ...string) (*Proc, error) {
	addrFile := filepath.Join(data, server.AddrFile)
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err // a stale file from a killed hub would be read as this one's
	}
	args := append([]string{"hub", "serve", "--data", data, "--http", addrs.HTTP,
		"--mqtt", addrs.MQTT, "--nats", addrs.NATS, "--log-level", "warn"}, extra...)
	p, err := Exec("hub", bin, args...)
	if err != nil {
		return nil, err
	}
	err = Poll(ctx, 30*time.Second, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("hub exited before writing %s: %v\n%s", server.AddrFile, p.err, p.output)
		default:
		}
		a, err := server.ReadAddrs(data)
		if err != nil {
			return false, nil // not written yet
		}
		p.Addrs = a
		return true, nil
	})
	if err != nil {
		_ = p.Stop(10 * time.Second)
		return nil, fmt.Errorf("waiting for %s: %w", server.AddrFile, err)
	}
	return p, nil
}

// Exec starts bin with args as a child process named name (used in
// errors), its stdout and stderr kept in a 16 KiB tail (Output). Like
// Start, the process is not tied to a context: Stop or Kill ends it.
func Exec(name, bin string, args ...string) (*Proc, error) {
	p := &Proc{name: name, done: make(chan struct{}), output: &TailBuffer{Max: 16 << 10}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// Exited reports whether the process has exited and, if so, Wait's error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output returns the last 16 KiB the process wrote.
func (p *Proc) Output() string { return p.output.String() }

// Kill ends the process with SIGKILL (kill -9) and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. A non-zero exit after SIGTERM is an error.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.done
		return nil // it exited meanwhile
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM\n%s", p.name, p.err, p.output)
		}
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed\n%s", p.name, timeout, p.output)
	}
}

// TailBuffer keeps the last Max bytes written to it (a child process's
// output, for error messages). It is safe for concurrent use.
type TailBuffer struct {
	Max int
	mu  sync.Mutex
	b   []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.Max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.Max:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// RaiseNoFile raises the soft RLIMIT_NOFILE to the hard limit: every
// simulated agent holds a connection, and so does the hub for each.
func RaiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("setrlimit NOFILE to %d: %w", l.Max, err)
		}
	}
	return nil
}

// ClkTck returns `getconf CLK_TCK`, or 100 (Linux's value) when getconf
// is missing or says something unexpected.
func ClkTck(ctx context.Context) int {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n <= 0 {
		return 100
	}
	return n
}

// CPUTicks returns utime+stime of pid in clock ticks, from /proc/PID/stat.
func CPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'. utime and stime are fields 14 and 15, so 11 and
	// 12 after field 3 (the state), which is index 0 here.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return ut + st, nil
}

// RSSMiB returns VmRSS of pid in MiB, from /proc/PID/status.
func RSSMiB(pid int) (float64, error) {
	m, err := Memory(pid)
	return m.RSS, err
}

// Mem is a process's memory from /proc/PID/status, in MiB (1 MiB = 1024
// kB as the kernel counts them).
type Mem struct {
	RSS float64 // VmRSS: resident now
	HWM float64 // VmHWM: the highest VmRSS so far
	// RSS split by kind: RssAnon (heap, stacks: private memory) and
	// RssFile (mapped files such as the binary and shared libraries,
	// which other processes mapping the same file share).
	Anon, File float64
}

// Memory reads VmRSS, VmHWM, RssAnon and RssFile of pid.
func Memory(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	fields := map[string]*float64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon, "RssFile": &m.File}
	seen := 0
	for line := range strings.Lines(string(b)) {
		key, rest, ok := strings.Cut(line, ":")
		dst := fields[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("/proc/%d/status: %s %q, want \"N kB\"", pid, key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		*dst = float64(kb) / 1024
		seen++
	}
	if seen != len(fields) {
		return Mem{}, fmt.Errorf("/proc/%d/status: %d of VmRSS, VmHWM, RssAnon and RssFile found", pid, seen)
	}
	return m, nil
}

// Mapped reports whether pid maps a file whose path contains name, from
// /proc/PID/maps (for example whether a shared library is loaded).
func Mapped(pid int, name string) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(b)) {
		// address perms offset dev inode path: the path is the sixth field.
		if f := strings.Fields(line); len(f) >= 6 && strings.Contains(f[5], name) {
			return true, nil
		}
	}
	return false, nil
}

// Poll calls f every 50 ms until it reports done, fails, or timeout passes.
func Poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		if err := Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
