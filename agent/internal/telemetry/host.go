package telemetry

import (
	"bufio"
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// hostSampler reads the process and host figures of Linux's /proc, statfs
// and getrusage. A figure it cannot read is reported as zero and logged
// once at debug level.
type hostSampler struct {
	log       *slog.Logger
	warned    map[string]bool
	procCPU   float64 // process CPU seconds at the last sample
	busy, all uint64  // host CPU jiffies at the last sample
}

func (h *hostSampler) fail(what string, err error) {
	if h.warned == nil {
		h.warned = map[string]bool{}
	}
	if !h.warned[what] {
		h.warned[what] = true
		h.log.Debug("telemetry: figure not available, reported as 0", "figure", what, "error", err)
	}
}

// sample reads the cumulative counters and returns their deltas since the
// previous sample.
func (h *hostSampler) sample() (procCPU float64, busy, all uint64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		h.fail("process_cpu", err)
	} else {
		cpu := tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		procCPU, h.procCPU = cpu-h.procCPU, cpu
	}
	b, a, err := hostCPU()
	if err != nil {
		h.fail("host_cpu", err)
	} else if a >= h.all && b >= h.busy {
		busy, all = b-h.busy, a-h.all
		h.busy, h.all = b, a
	}
	return procCPU, busy, all
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// agent returns the agent's figures over an interval of wall time.
func (h *hostSampler) agent(_ time.Duration, dataDir, cacheDir string) *agentv1.AgentTelemetry {
	t := &agentv1.AgentTelemetry{}
	cpu, busy, all := h.sample()
	t.ProcessCpuSeconds = cpu
	if all > 0 {
		t.HostCpuUtilization = float64(busy) / float64(all)
	}
	if rss, err := processRSS(); err != nil {
		h.fail("process_rss", err)
	} else {
		t.ProcessRssBytes = rss
	}
	if total, avail, err := meminfo(); err != nil {
		h.fail("host_memory", err)
	} else {
		t.HostMemoryTotalBytes, t.HostMemoryAvailableBytes = total, avail
	}
	if dataDir != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dataDir, &st); err != nil {
			h.fail("disk", err)
		} else {
			t.DiskTotalBytes = st.Blocks * uint64(st.Bsize)
			t.DiskFreeBytes = st.Bavail * uint64(st.Bsize)
		}
	}
	if cacheDir != "" {
		n, err := dirBytes(cacheDir)
		if err != nil {
			h.fail("model_cache", err)
		}
		t.ModelCacheBytes = n
	}
	return t
}

// hostCPU returns the busy and total jiffies of all CPUs (/proc/stat).
func hostCPU() (busy, all uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errBadProc("/proc/stat", "a first line \"cpu user nice system idle ...\"")
	}
	var idle uint64
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, errBadProc("/proc/stat", "numeric cpu fields")
		}
		all += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return all - idle, all, nil
}

func processRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, errBadProc("/proc/self/statm", "at least 2 fields")
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, errBadProc("/proc/self/statm", "a numeric resident field")
	}
	return pages * uint64(os.Getpagesize()), nil
}

func meminfo() (total, avail uint64, err error) {
	fh, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var got int
	for sc.Scan() && got < 2 {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "MemTotal" && k != "MemAvailable") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, errBadProc("/proc/meminfo", k+" in kB")
		}
		if k == "MemTotal" {
			total = n << 10
		} else {
			avail = n << 10
		}
		got++
	}
	if got < 2 {
		return 0, 0, errBadProc("/proc/meminfo", "MemTotal and MemAvailable")
	}
	return total, avail, sc.Err()
}

func dirBytes(dir string) (uint64, error) {
	var n uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n, err
}

type procError struct{ file, want string }

func (e *procError) Error() string { return e.file + ": unexpected format, expected " + e.want }

func errBadProc(file, want string) error { return &procError{file, want} }
