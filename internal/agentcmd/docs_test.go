package agentcmd_test

import (
	"bytes"
	"flag"
	"path/filepath"
	"testing"

	"github.com/atelier-ml/atelier/internal/agentcmd"
	"github.com/atelier-ml/atelier/internal/clidoc"
)

var update = flag.Bool("update", false, "rewrite docs/agent-cli.md from the command tree")

// TestDocs fails when docs/agent-cli.md is not what the command tree
// generates.
func TestDocs(t *testing.T) {
	root := agentcmd.New(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	clidoc.Golden(t, root, filepath.Join("..", "..", "docs", "agent-cli.md"), "go test ./internal/agentcmd -run TestDocs -update", *update)
}
