package clidoc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Generate writes the Markdown reference of the command tree rooted at root
// to w: one section per command, in tree order, with in-page links. regen
// is the command that regenerates the file, named in its header. The output
// depends only on the tree, so it can be checked in and compared.
func Generate(root *cobra.Command, w io.Writer, regen string) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s command reference\n\n", root.Name())
	fmt.Fprintf(&buf, "<!-- Generated from the cobra command tree by `%s`. Do not edit. -->\n\n", regen)
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != root {
			return nil
		}
		c.DisableAutoGenTag = true
		var sec bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &sec, anchorLink); err != nil {
			return fmt.Errorf("docs for %s: %w", c.CommandPath(), err)
		}
		// Every command's own heading is "## path"; keep that and demote
		// nothing else, so anchors are the command paths.
		buf.Write(sec.Bytes())
		buf.WriteString("\n")
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return err
	}
	_, err := w.Write(bytes.TrimRight(buf.Bytes(), "\n"))
	if err == nil {
		_, err = io.WriteString(w, "\n")
	}
	return err
}

// anchorLink turns the file name cobra/doc would link to
// ("atelier_run_list.md") into an in-page anchor ("#atelier-run-list").
func anchorLink(name string) string {
	return "#" + strings.ReplaceAll(strings.TrimSuffix(name, ".md"), "_", "-")
}

// Golden fails t when the file at path differs from what Generate writes
// for root; with update set it rewrites the file first. regen is the
// command that regenerates it, quoted in the failure.
func Golden(t testing.TB, root *cobra.Command, path, regen string, update bool) {
	t.Helper()
	var got bytes.Buffer
	if err := Generate(root, &got, regen); err != nil {
		t.Fatal(err)
	}
	if update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with: %s)", err, regen)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("%s is stale; regenerate it with: %s", path, regen)
	}
}
