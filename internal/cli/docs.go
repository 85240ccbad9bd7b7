package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// GenDocs writes the Markdown reference of the command tree rooted at root
// (as built by New) to w: one section per command, in tree order, with
// in-page links. The output depends only on the tree, so it can be checked
// in and compared (docs/cli.md).
func GenDocs(root *cobra.Command, w io.Writer) error {
	var buf bytes.Buffer
	buf.WriteString("# atelier command reference\n\n")
	buf.WriteString("<!-- Generated from the cobra command tree by `go test ./internal/cli -run TestDocs -update`. Do not edit. -->\n\n")
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
