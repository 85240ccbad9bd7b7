// Package cli is the command tree of the atelier binary: the cobra commands,
// their flags, output formatting (table, JSON, YAML), the mapping of errors
// to one readable line and an exit code, and the generated reference in
// docs/cli.md.
//
// It owns no domain logic: it talks to a hub through hub/client, runs the
// hub through hub/server and submits runs through internal/runner.
//
// Exit codes: 0 success; 1 an operation failed (the hub refused it, it is
// not reachable, a file could not be written); 2 a usage error (unknown
// command or flag, missing or bad argument); 130 interrupted; `run submit`
// exits with the code of the command it ran.
//
// The reference is regenerated with
//
//	go test ./internal/cli -run TestDocs -update
package cli
