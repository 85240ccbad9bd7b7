// Command atelier is the command-line interface of Atelier: it runs the hub
// (atelier hub serve) and manages workspaces, experiments and runs on one.
// See docs/cli.md for the reference.
package main
