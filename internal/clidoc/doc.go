// Package clidoc generates the Markdown reference of a cobra command tree
// (docs/cli.md for atelier, docs/agent-cli.md for atelier-agent) and checks
// in tests that the committed file is current. The reference is never
// written by hand: it is the command tree's own help, in tree order.
package clidoc
