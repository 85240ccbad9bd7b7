package sqlite

// migrations are applied in order; migrations[i] takes the schema from
// version i to i+1. Never edit an applied migration: append a new one.
var migrations = append([]string{
	`
CREATE TABLE workspaces (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL
);
CREATE TABLE experiments (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	UNIQUE (workspace_id, name)
);
CREATE TABLE runs (
	id            INTEGER PRIMARY KEY,
	uid           TEXT NOT NULL UNIQUE,
	workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
	name          TEXT NOT NULL DEFAULT '',
	parent_id     INTEGER REFERENCES runs(id) ON DELETE SET NULL,
	status        TEXT NOT NULL,
	command       TEXT NOT NULL DEFAULT '',
	exit_code     INTEGER,
	error         TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	started_at    INTEGER,
	ended_at      INTEGER,
	log_seq       INTEGER NOT NULL DEFAULT 0,
	snapshot_sha  TEXT,
	snapshot_size INTEGER
);
CREATE INDEX runs_workspace ON runs (workspace_id, created_at);
CREATE INDEX runs_experiment ON runs (experiment_id, created_at);
CREATE INDEX runs_parent ON runs (parent_id);
CREATE TABLE params (
	run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	key    TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE tags (
	run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	key    TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
-- metrics is clustered by series: one B-tree, appends land at the end of
-- each series, and reading a series is a range scan. An exact duplicate
-- point (same name, step, time and value) is stored once, so a retried
-- batch is idempotent. It has no foreign key: checking one per point costs
-- a quarter of the ingestion rate; rows are deleted with their run by
-- DeleteWorkspace, and points are only inserted for a run found in the same
-- transaction.
CREATE TABLE metrics (
	run_id INTEGER NOT NULL,
	name   TEXT NOT NULL,
	step   INTEGER NOT NULL,
	time   INTEGER NOT NULL,
	value  REAL NOT NULL,
	PRIMARY KEY (run_id, name, step, time, value)
) WITHOUT ROWID;
-- latest_metrics keeps each series' latest point (highest step, then latest
-- time), maintained on insert, so run queries never scan the series.
CREATE TABLE latest_metrics (
	run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	name   TEXT NOT NULL,
	value  REAL NOT NULL,
	step   INTEGER NOT NULL,
	time   INTEGER NOT NULL,
	PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX latest_metrics_value ON latest_metrics (name, value);
CREATE TABLE logs (
	run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	seq    INTEGER NOT NULL,
	stream TEXT NOT NULL,
	time   INTEGER NOT NULL,
	text   TEXT NOT NULL,
	PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE artifacts (
	run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	path   TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	size   INTEGER NOT NULL,
	PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
`,
	`
-- The model registry. models holds the per-name version counter, so version
-- numbers are assigned in the registering transaction and never reused.
CREATE TABLE models (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	last_version INTEGER NOT NULL DEFAULT 0,
	UNIQUE (workspace_id, name)
);
-- Lineage is kept by run uid and experiment name (text), so it reads the
-- same however the run is later stored.
CREATE TABLE model_versions (
	id            INTEGER PRIMARY KEY,
	model_id      INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
	version       INTEGER NOT NULL,
	sha256        TEXT NOT NULL,
	size          INTEGER NOT NULL,
	description   TEXT NOT NULL DEFAULT '',
	ir_version    INTEGER NOT NULL,
	opset         INTEGER NOT NULL,
	producer      TEXT NOT NULL DEFAULT '',
	signature     TEXT NOT NULL,
	run_uid       TEXT NOT NULL DEFAULT '',
	experiment    TEXT NOT NULL DEFAULT '',
	artifact_path TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	UNIQUE (model_id, version)
);
CREATE INDEX model_versions_sha256 ON model_versions (sha256);
CREATE TABLE model_version_tags (
	version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
	key        TEXT NOT NULL,
	value      TEXT NOT NULL,
	PRIMARY KEY (version_id, key)
) WITHOUT ROWID;
CREATE TABLE model_aliases (
	model_id   INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
	alias      TEXT NOT NULL,
	version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
	PRIMARY KEY (model_id, alias)
) WITHOUT ROWID;
CREATE INDEX model_aliases_version ON model_aliases (version_id);
`,
	`
-- Agents are hub-wide (not per workspace). Join tokens and agent secrets
-- are kept only as their sha256; a token is one-time (used_at).
CREATE TABLE join_tokens (
	hash       BLOB PRIMARY KEY,
	labels     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER,
	used_by    TEXT
) WITHOUT ROWID;
CREATE TABLE agents (
	id                  TEXT PRIMARY KEY,
	name                TEXT NOT NULL,
	kind                TEXT NOT NULL,
	labels              TEXT NOT NULL,
	capabilities        TEXT NOT NULL,
	secret_hash         BLOB NOT NULL,
	online              INTEGER NOT NULL DEFAULT 0,
	last_seen           INTEGER,
	endpoint            TEXT NOT NULL DEFAULT '',
	observed_generation INTEGER NOT NULL DEFAULT 0,
	enrolled_at         INTEGER NOT NULL,
	revoked_at          INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX agents_name ON agents (name) WHERE revoked_at IS NULL;
`,
	`
-- Deployments: names are unique hub-wide (agents serve every deployment at
-- /v2/models/{name}). The deployed version is kept by id; deleting a
-- deployed version is refused by the store (versionDeployments), and the
-- cascade only runs when a whole workspace is force-deleted.
CREATE TABLE deployments (
	id           INTEGER PRIMARY KEY,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	name         TEXT NOT NULL UNIQUE,
	version_id   INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
	alias        TEXT NOT NULL DEFAULT '',
	agents       TEXT NOT NULL, -- JSON array of agent ids
	selector     TEXT NOT NULL, -- JSON object of labels
	options      TEXT NOT NULL, -- JSON hub.RuntimeOptions
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
);
CREATE INDEX deployments_version ON deployments (version_id);
-- agent_desired keeps the generation of each agent's desired state, so
-- generations keep increasing across hub restarts, and a digest of its
-- content, so an unchanged state is not given a new generation.
CREATE TABLE agent_desired (
	agent_id   TEXT PRIMARY KEY,
	generation INTEGER NOT NULL,
	digest     TEXT NOT NULL
) WITHOUT ROWID;
`,
}, migTelemetry, migDrift, migEvents, migGuard, migDatasets, migTelemetryMerged)
