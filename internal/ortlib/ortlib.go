package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Version is the ONNX Runtime release the setup step installs. It must match
// the C API version that github.com/yalue/onnxruntime_go was built against.
const Version = "1.24.1"

// EnvVar names the environment variable that points at the library.
const EnvVar = "ATELIER_ORT_LIB"

// ErrNotFound is returned by Find when no library file exists.
var ErrNotFound = errors.New("onnx runtime library not found")

// ErrOtherLibrary is returned by Init when the process already initialized
// ONNX Runtime from a different file.
var ErrOtherLibrary = errors.New("onnx runtime already initialized from another library")

// CachePath returns where the setup step installs the library for this
// machine's architecture.
func CachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("user cache dir: %w", err)
	}
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	if arch == "" {
		return "", fmt.Errorf("no ONNX Runtime build for %s/%s: %w", runtime.GOOS, runtime.GOARCH, ErrNotFound)
	}
	return filepath.Join(dir, "atelier", "onnxruntime", Version, "linux-"+arch, "libonnxruntime.so.1"), nil
}

// Find returns the path of the ONNX Runtime shared library: explicit if it
// is not empty, else $ATELIER_ORT_LIB, else the setup step's cache. The
// error says where it looked and how to install the library.
func Find(explicit string) (string, error) {
	var tried []string
	for _, c := range []struct{ path, from string }{
		{explicit, "--ort-lib"},
		{os.Getenv(EnvVar), "$" + EnvVar},
	} {
		if c.path == "" {
			continue
		}
		if _, err := os.Stat(c.path); err != nil {
			return "", fmt.Errorf("%s %q: %w (run `make setup`, or point %s at libonnxruntime.so.1 %s)", c.from, c.path, ErrNotFound, c.from, Version)
		}
		return c.path, nil
	}
	p, err := CachePath()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	tried = append(tried, p)
	return "", fmt.Errorf("%w: looked in %v; install it with `make setup` (it takes libonnxruntime.so.1 %s from the onnxruntime-node npm package), or set --ort-lib / %s", ErrNotFound, tried, Version, EnvVar)
}

var (
	mu       sync.Mutex
	initPath string
)

// Init finds the library (see Find) and initializes the process-wide ONNX
// Runtime environment once. It returns the path in use. Calling it again with
// the same or an empty explicit path is cheap and returns the same path.
func Init(explicit string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if initPath != "" {
		if explicit != "" && explicit != initPath {
			return "", fmt.Errorf("%w: %q in use, %q requested", ErrOtherLibrary, initPath, explicit)
		}
		return initPath, nil
	}
	p, err := Find(explicit)
	if err != nil {
		return "", err
	}
	ort.SetSharedLibraryPath(p)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("initialize onnx runtime from %q: %w", p, err)
	}
	initPath = p
	return p, nil
}

// RuntimeVersion reports the version string of the loaded library. It must be
// called after Init.
func RuntimeVersion() string { return ort.GetVersion() }
