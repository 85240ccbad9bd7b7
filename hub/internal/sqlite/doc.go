// Package sqlite implements hub.Store on SQLite (github.com/mattn/go-sqlite3).
//
// The database runs in WAL mode with synchronous=FULL, so a write whose
// method returned nil survives a crash or power loss; foreign keys are on.
// Writes go through one connection (SQLite allows one writer) in
// BEGIN IMMEDIATE transactions; reads use a separate pool of read-only
// connections and never block writes. The schema is created and upgraded by
// versioned migrations, each applied in its own transaction.
//
// All SQL dialect details, including the translation of run filters
// (hub.Cond) to SQL with bound parameters, stay inside this package. It
// does not store blob contents (see hub.Blobs) and does not notify anyone
// of changes.
package sqlite
