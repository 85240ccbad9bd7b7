package hub

import (
	"context"
	"time"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Telemetry. Agents measure what they serve and publish it in batches,
// each with a per-agent sequence number (agentv1.TelemetryBatch). The hub
// stores every batch once: ingestion is idempotent by (agent, seq), so an
// agent resending after a lost acknowledgement or a hub crash never
// counts anything twice. Raw points are kept for a window, 1-minute
// rollups for longer (TelemetryRetention).

// TelemetryStore keeps the time series of agent telemetry.
type TelemetryStore interface {
	// IngestTelemetry stores uploads, in order, in one transaction: a
	// batch whose (agent, seq) is already stored is skipped and counted in
	// Duplicates; every other batch is stored with all it carries (request
	// counts and histograms per deployment, the agent's figures, feature
	// summaries, events). Batches of agents or deployments the hub does not
	// know are stored too (an agent may report a deployment deleted since).
	// When it returns nil, every batch of every upload is durably stored.
	IngestTelemetry(ctx context.Context, uploads []TelemetryUpload) (TelemetryIngest, error)
	// DeploymentMetrics summarizes a deployment's requests in [q.Since,
	// q.Until), in total and per agent (only q.Agent if set). A deployment
	// with no telemetry in the window has zero figures, not an error;
	// ErrNotFound if no deployment has that name and no telemetry names it.
	DeploymentMetrics(ctx context.Context, name string, q MetricsQuery) (DeploymentMetrics, error)
	// AgentMetrics summarizes an agent's own figures and the requests it
	// served in the window. ErrNotFound for an unknown agent.
	AgentMetrics(ctx context.Context, id string, q MetricsQuery) (AgentMetrics, error)
	// TelemetryTotals returns running totals since the store was created,
	// per deployment and outcome, for the hub's /metrics (they never
	// decrease, retention does not touch them).
	TelemetryTotals(ctx context.Context) ([]DeploymentTotals, error)
	// PruneTelemetry applies the retention policy as of now: raw points
	// older than p.Raw are folded into 1-minute rollups and deleted,
	// rollups older than p.Rollups are deleted, and the freed pages are
	// returned to the file system.
	PruneTelemetry(ctx context.Context, now time.Time, p TelemetryRetention) (TelemetryPruned, error)
}

// TelemetryUpload is what one agent published in one message.
type TelemetryUpload struct {
	Agent   string
	Batches []*agentv1.TelemetryBatch
}

// TelemetryIngest counts what IngestTelemetry did.
type TelemetryIngest struct {
	Stored     int // batches stored now
	Duplicates int // batches already stored before, skipped
	// Rejected counts batches refused as invalid (nothing of them is
	// stored, the others are); Invalid holds one error per rejected batch,
	// naming the agent, seq and field, wrapping ErrInvalid.
	Rejected int
	Invalid  []error
}

// MetricsQuery selects a time window [Since, Until) and optionally one
// agent. A zero Until means now.
type MetricsQuery struct {
	Since, Until time.Time
	Agent        string
}

// RequestMetrics summarizes requests over a window. Latencies are
// estimated from the agents' histograms (linear interpolation inside a
// bucket), in milliseconds.
type RequestMetrics struct {
	// Agent is set in DeploymentMetrics.Agents (and Deployment in
	// AgentMetrics.Deployments).
	Agent      string `json:"agent,omitempty"`
	Deployment string `json:"deployment,omitempty"`
	// Requests counts every request; Errors those whose outcome is not
	// "ok"; ByOutcome splits Requests by outcome.
	Requests  uint64            `json:"requests"`
	Errors    uint64            `json:"errors"`
	ByOutcome map[string]uint64 `json:"by_outcome"`
	// RequestRate is Requests per second over the window.
	RequestRate  float64 `json:"request_rate"`
	ErrorRate    float64 `json:"error_rate"`
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP95Ms float64 `json:"latency_p95_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	QueueP99Ms   float64 `json:"queue_p99_ms"`
	ComputeP99Ms float64 `json:"compute_p99_ms"`
	// BatchSizeMean is requests per backend run.
	BatchSizeMean float64 `json:"batch_size_mean"`
	// ModelVersions are the versions that answered, ascending.
	ModelVersions []int `json:"model_versions,omitempty"`
}

// DeploymentMetrics is the answer of DeploymentMetrics.
type DeploymentMetrics struct {
	Deployment string           `json:"deployment"`
	Since      time.Time        `json:"since"`
	Until      time.Time        `json:"until"`
	Total      RequestMetrics   `json:"total"`
	Agents     []RequestMetrics `json:"agents"`
}

// AgentMetrics is the answer of AgentMetrics: the agent's latest figures,
// averages over the window, and the requests it served per deployment.
type AgentMetrics struct {
	Agent string    `json:"agent"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// LastReport is the end of the newest batch in the window (zero if none).
	LastReport               time.Time        `json:"last_report"`
	Batches                  int              `json:"batches"`
	CPUCoresMean             float64          `json:"cpu_cores_mean"` // process CPU seconds per second
	HostCPUUtilizationMean   float64          `json:"host_cpu_utilization_mean"`
	RSSBytes                 uint64           `json:"rss_bytes"`
	HostMemoryTotalBytes     uint64           `json:"host_memory_total_bytes"`
	HostMemoryAvailableBytes uint64           `json:"host_memory_available_bytes"`
	DiskTotalBytes           uint64           `json:"disk_total_bytes"`
	DiskFreeBytes            uint64           `json:"disk_free_bytes"`
	UptimeSeconds            uint64           `json:"uptime_seconds"`
	ModelCacheBytes          uint64           `json:"model_cache_bytes"`
	SpoolPendingBatches      uint64           `json:"spool_pending_batches"`
	DroppedBatches           uint64           `json:"dropped_batches"`
	Deployments              []RequestMetrics `json:"deployments"`
}

// DeploymentTotals are running totals of one deployment (all agents).
type DeploymentTotals struct {
	Deployment string
	// Requests by outcome.
	Requests map[string]uint64
	// RequestSeconds is the cumulative request latency histogram (bounds in
	// seconds, per-bucket counts, len(Counts) == len(Bounds)+1).
	RequestSeconds Histogram
}

// Histogram is a fixed-bucket histogram: Counts has len(Bounds)+1
// entries, the last for values above every bound; counts are per bucket,
// not cumulative.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// TelemetryRetention is how long telemetry is kept.
type TelemetryRetention struct {
	Raw     time.Duration // raw batches (default 24h)
	Rollups time.Duration // 1-minute rollups (default 30 days)
}

// TelemetryPruned counts what PruneTelemetry removed.
type TelemetryPruned struct {
	RawDeleted    int64
	RollupsAdded  int64
	RollupDeleted int64
	BytesFreed    int64
}
