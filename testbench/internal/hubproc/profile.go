package hubproc

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// CPUProfile fetches a CPU profile of a hub started with --pprof, taken over
// the next d, from its HTTP API at base (http://HOST:PORT), and writes it
// to path (read it with `go tool pprof`). It blocks for about d.
func CPUProfile(ctx context.Context, base string, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("hub cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("hub cpu profile: %s: %s (was the hub started with --pprof?)", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("hub cpu profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("hub cpu profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("hub cpu profile %s: %w", path, err)
	}
	return nil
}
