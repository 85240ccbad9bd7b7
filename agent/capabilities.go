package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// DetectCapabilities describes this machine for an agent of kind:
// runtime.GOOS/GOARCH, the CPUs usable by the process, total memory from
// /proc/meminfo (0 where it cannot be read), and the given ONNX Runtime and
// agent versions.
func DetectCapabilities(kind, onnxRuntimeVersion, agentVersion string) *agentv1.Capabilities {
	c := &agentv1.Capabilities{Kind: kind, Os: runtime.GOOS, Arch: runtime.GOARCH,
		Cpus: uint32(runtime.NumCPU()), OnnxruntimeVersion: onnxRuntimeVersion, AgentVersion: agentVersion}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		if n, err := ParseMemTotal(f); err == nil {
			c.MemoryBytes = n
		}
		f.Close()
	}
	return c
}

// ParseMemTotal reads the MemTotal line of a /proc/meminfo-format stream
// ("MemTotal:  16318480 kB") and returns it in bytes.
func ParseMemTotal(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: MemTotal line %q: want \"MemTotal: N kB\"", sc.Text())
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: MemTotal %q: %w", f[0], err)
		}
		return n * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return 0, fmt.Errorf("meminfo: no MemTotal line")
}
