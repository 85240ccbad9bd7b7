package cli_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/atelier-ml/atelier/internal/cli"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the command tree")

// TestDocs fails when docs/cli.md is not what the command tree generates.
// Regenerate with: go test ./internal/cli -run TestDocs -update
func TestDocs(t *testing.T) {
	root := cli.New(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }, nil)
	var got bytes.Buffer
	if err := cli.GenDocs(root, &got); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "cli.md")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./internal/cli -run TestDocs -update)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("docs/cli.md is stale; regenerate it with: go test ./internal/cli -run TestDocs -update")
	}
}
