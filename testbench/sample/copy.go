package sample

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Dir returns the directory of the sample training program (train/) in
// this source tree. It is meant for tests and tools run from the tree.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "train")
}

// CopyProgram copies the sample training program into dst, as `run
// submit` snapshots it, leaving out outputs/ of earlier local runs. dst is
// created if missing. `go run .` in dst then trains the model.
func CopyProgram(dst string) error {
	src := Dir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "outputs" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("copy the sample program: %w", err)
	}
	return nil
}
