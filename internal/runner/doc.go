// Package runner implements `atelier run submit`: it packs a directory into a
// deterministic snapshot, records a run on the hub, runs a command locally in
// a fresh copy of that snapshot, and streams what the command prints and
// reports (logs, metrics, params, tags, output artifacts) to the hub.
//
// The lifecycle of Submit:
//
//  1. Pack Options.Dir into a tar.gz (sorted, fixed mtimes and owners, so a
//     tree always gives the same sha256), honouring .gitignore and
//     .atelierignore files (package runner/ignore) and refusing trees over
//     Options.MaxSnapshotBytes or Options.MaxSnapshotFiles.
//  2. Create the run (queued, with command, params and tags), upload the
//     snapshot, set it running.
//  3. Extract the snapshot into a temporary directory and run the command
//     there, with ATELIER_* variables in its environment.
//  4. Copy stdout and stderr to the terminal and, batched, into the run's
//     logs; parse the line protocol (package runner/lineproto) on stdout
//     into metrics, params and tags.
//  5. Upload the files the command wrote under outputs/ as artifacts, and
//     set the final status from the exit code.
//
// The hub is never allowed to kill a training run: when it becomes
// unreachable the command keeps running, records are buffered and retried
// with backoff, and what could not be recorded is reported when Submit
// returns.
//
// The package does not parse flags or talk HTTP itself: the CLI (internal/cli)
// builds Options, and the hub is reached through the small Hub interface,
// which hub/client.*Client satisfies. Pack and Extract are exported for
// other users of snapshots. The user-facing description, with the line
// protocol grammar, the environment and the ignore rules, is docs/runs.md.
package runner
