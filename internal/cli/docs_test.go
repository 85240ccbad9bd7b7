package cli_test

import (
	"bytes"
	"flag"
	"path/filepath"
	"testing"

	"github.com/atelier-ml/atelier/internal/cli"
	"github.com/atelier-ml/atelier/internal/clidoc"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the command tree")

// TestDocs fails when docs/cli.md is not what the command tree generates.
func TestDocs(t *testing.T) {
	root := cli.New(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }, nil)
	clidoc.Golden(t, root, filepath.Join("..", "..", "docs", "cli.md"), "go test ./internal/cli -run TestDocs -update", *update)
}
