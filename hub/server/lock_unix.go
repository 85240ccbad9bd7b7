//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockFile is the file in the data directory a running hub holds an
// exclusive lock on.
const LockFile = "hub.lock"

// lockData takes an exclusive, non-blocking flock on DATA/hub.lock, so two
// hubs never serve one data directory (their stores and brokers would
// write over each other's state). The lock goes with the process: closing
// the file, or any exit including kill -9, releases it.
func lockData(dir string) (*os.File, error) {
	p := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: data directory %s is in use by another hub (it holds %s); stop it first or use another --data", ErrDataLocked, dir, p)
		}
		return nil, fmt.Errorf("lock data directory: flock %s: %w", p, err)
	}
	return f, nil
}
