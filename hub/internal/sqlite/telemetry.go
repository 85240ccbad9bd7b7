package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
)

// migTelemetry creates the telemetry tables.
//
// Deduplication. telemetry_seen holds the exact set of (agent, seq) stored
// at least for the last raw window (by reception time), as runs of
// consecutive seqs [lo, hi] with the time hi was stored: an agent's spool
// sends in sequence order, so a healthy agent has one row that grows, not
// one row per batch (86 million a day for 1,000 agents every second).
// telemetry_agents holds, per agent, a floor: the highest seq of the runs
// pruned. A batch is new when its seq is above the floor and in no run.
// Agents drop their spool through the seq the hub acknowledges, so a seq
// at or below one stored a whole raw window ago can only be a resend of a
// stored batch: the floor, kept forever (one row per agent), makes such a
// resend a duplicate however late it comes, and the runs make any resend
// within the window one. An agent whose sequence restarts (its data
// directory was wiped) must enroll again under a new id.
//
// Requests. telemetry_raw has one row per (batch, deployment, model
// version), clustered by (deployment, start) so a deployment's window is a
// range scan; telemetry_rollup has one row per (deployment, minute, agent,
// version) for data older than the raw window. A batch belongs to the
// minute its interval starts in. Both hold the same compact "data" blob:
// requests by outcome and the four histograms, whose bounds are interned in
// telemetry_bounds (a histogram's bounds are the same for a fleet, so each
// row carries only counts as varints and the sum). A row is either raw or
// folded into a rollup, moved in one transaction, so a window spanning both
// counts every batch once.
//
// Agents. telemetry_agent_raw has one row per batch with the agent's
// figures, telemetry_agent_rollup one per (agent, minute), with the same
// columns: sums over the batches (durations, CPU seconds) and the figures
// of the newest batch.
//
// Totals. telemetry_totals keeps running totals per deployment (the same
// data blob), updated in every ingest transaction and never pruned.
//
// Names. The other tables refer to agents by telemetry_agents.id and to
// deployments by telemetry_totals.id, small integers, not by their names
// (an agent id is 32 characters, and it would be repeated in every key
// and index entry): with 3 deployments a batch takes about 520 bytes.
const migTelemetry = `
CREATE TABLE telemetry_agents (
	id    INTEGER PRIMARY KEY,
	agent TEXT NOT NULL UNIQUE,
	floor INTEGER NOT NULL
);
CREATE TABLE telemetry_seen (
	agent_id    INTEGER NOT NULL,
	lo          INTEGER NOT NULL,
	hi          INTEGER NOT NULL,
	received_at INTEGER NOT NULL, -- when hi was stored
	PRIMARY KEY (agent_id, lo)
) WITHOUT ROWID;
CREATE TABLE telemetry_bounds (
	id     INTEGER PRIMARY KEY,
	bounds BLOB NOT NULL UNIQUE
);
CREATE TABLE telemetry_raw (
	deployment_id INTEGER NOT NULL,
	start_ns      INTEGER NOT NULL,
	agent_id      INTEGER NOT NULL,
	seq           INTEGER NOT NULL,
	model_version INTEGER NOT NULL,
	end_ns        INTEGER NOT NULL,
	data          BLOB NOT NULL,
	PRIMARY KEY (deployment_id, start_ns, agent_id, seq, model_version)
) WITHOUT ROWID;
CREATE INDEX telemetry_raw_agent ON telemetry_raw (agent_id, start_ns);
CREATE TABLE telemetry_rollup (
	deployment_id INTEGER NOT NULL,
	minute        INTEGER NOT NULL,
	agent_id      INTEGER NOT NULL,
	model_version INTEGER NOT NULL,
	data          BLOB NOT NULL,
	PRIMARY KEY (deployment_id, minute, agent_id, model_version)
) WITHOUT ROWID;
CREATE INDEX telemetry_rollup_agent ON telemetry_rollup (agent_id, minute);
CREATE TABLE telemetry_agent_raw (
	agent_id         INTEGER NOT NULL,
	start_ns         INTEGER NOT NULL,
	seq              INTEGER NOT NULL,
	end_ns           INTEGER NOT NULL,
	dur_ns           INTEGER NOT NULL,
	cpu_seconds      REAL NOT NULL,
	host_cpu_seconds REAL NOT NULL,
	fig_end_ns       INTEGER NOT NULL,
	rss              INTEGER NOT NULL,
	mem_total        INTEGER NOT NULL,
	mem_available    INTEGER NOT NULL,
	disk_total       INTEGER NOT NULL,
	disk_free        INTEGER NOT NULL,
	uptime           INTEGER NOT NULL,
	cache            INTEGER NOT NULL,
	spool            INTEGER NOT NULL,
	dropped          INTEGER NOT NULL,
	PRIMARY KEY (agent_id, start_ns, seq)
) WITHOUT ROWID;
CREATE TABLE telemetry_agent_rollup (
	agent_id         INTEGER NOT NULL,
	minute           INTEGER NOT NULL,
	batches          INTEGER NOT NULL,
	end_ns           INTEGER NOT NULL,
	dur_ns           INTEGER NOT NULL,
	cpu_seconds      REAL NOT NULL,
	host_cpu_seconds REAL NOT NULL,
	fig_end_ns       INTEGER NOT NULL,
	rss              INTEGER NOT NULL,
	mem_total        INTEGER NOT NULL,
	mem_available    INTEGER NOT NULL,
	disk_total       INTEGER NOT NULL,
	disk_free        INTEGER NOT NULL,
	uptime           INTEGER NOT NULL,
	cache            INTEGER NOT NULL,
	spool            INTEGER NOT NULL,
	dropped          INTEGER NOT NULL,
	PRIMARY KEY (agent_id, minute)
) WITHOUT ROWID;
CREATE TABLE telemetry_totals (
	id         INTEGER PRIMARY KEY,
	deployment TEXT NOT NULL UNIQUE,
	data       BLOB NOT NULL
);
`

// Limits of one telemetry batch. A batch over any of them is rejected
// whole: they protect stored data (SQLite integers are signed 64-bit,
// JSON has no NaN) and the hub's memory, not the agent's choices.
const (
	maxTelemetryName  = 256 // agent and deployment names
	maxOutcomeName    = 64
	maxOutcomes       = 32
	maxMergedOutcomes = 64   // distinct outcomes in a rollup or the totals
	maxBoundSets      = 4096 // distinct histogram bounds the store keeps
	maxBatchEntries   = 1024 // deployment entries in one batch
	maxHistBounds     = 256
	maxTelemetryCount = 1 << 40 // one count; 2^24 such batches still sum below 2^64
	// maxTelemetryValue bounds histogram bounds and sums and CPU seconds,
	// so merged sums and interpolated quantiles stay finite (JSON has no
	// Inf).
	maxTelemetryValue = 1e12
	maxBatchSpan      = 24 * time.Hour
	maxClockSkew      = time.Hour // how far in the hub's future a batch may end
)

// minBatchTime is the earliest start a batch may have (2000-01-01 UTC): an
// agent reporting earlier has no clock.
var minBatchTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Histograms carried per deployment entry, in data blob order.
const (
	histQueue = iota
	histCompute
	histRequest
	histBatch
	numHists
)

var histNames = [numHists]string{"queue_seconds", "compute_seconds", "request_seconds", "batch_size"}

// Default retention, applied when a TelemetryRetention field is zero.
const (
	DefaultTelemetryRaw     = 24 * time.Hour
	DefaultTelemetryRollups = 30 * 24 * time.Hour
)

// hist is a decoded histogram; zero (no counts) when absent.
type hist struct {
	bounds []float64
	counts []uint64
	sum    float64
}

func (h hist) empty() bool { return len(h.counts) == 0 }

// add merges o into h. Histograms with the same bounds add bucket by
// bucket; otherwise each of o's buckets is added to h's bucket holding its
// upper edge (an approximation that never loses a count).
func (h *hist) add(o hist) {
	if o.empty() {
		return
	}
	if h.empty() {
		h.bounds, h.counts, h.sum = o.bounds, slices.Clone(o.counts), o.sum
		return
	}
	h.sum += o.sum
	if slices.Equal(h.bounds, o.bounds) {
		for i, c := range o.counts {
			h.counts[i] += c
		}
		return
	}
	for i, c := range o.counts {
		j := len(h.bounds)
		if i < len(o.bounds) {
			j = sort.SearchFloat64s(h.bounds, o.bounds[i])
		}
		h.counts[j] += c
	}
}

func (h hist) stats() scoring.HistogramStats {
	return scoring.HistogramStats{Bounds: h.bounds, Counts: h.counts, Sum: h.sum}
}

// reqData is what a data blob holds: requests by outcome and histograms.
type reqData struct {
	outcomes map[string]uint64
	h        [numHists]hist
}

// add merges o into d. Past maxMergedOutcomes distinct outcomes (agents
// sending ever new names), further names count as "other", so merged
// rows and totals stay bounded.
func (d *reqData) add(o *reqData) {
	if d.outcomes == nil {
		d.outcomes = make(map[string]uint64, len(o.outcomes))
	}
	for k, v := range o.outcomes {
		if _, ok := d.outcomes[k]; !ok && len(d.outcomes) >= maxMergedOutcomes {
			k = "other"
		}
		d.outcomes[k] += v
	}
	for i := range d.h {
		d.h[i].add(o.h[i])
	}
}

// boundsTable interns histogram bounds within one transaction.
type boundsTable struct {
	ids    map[string]int64
	bounds map[int64][]float64
	// recent are the last bounds looked up (a fleet uses a few), compared
	// before encoding a key.
	recent []recentBounds
}

type recentBounds struct {
	bounds []float64
	id     int64
}

// lookup returns the id of b if the store has it.
func (t *boundsTable) lookup(b []float64) (int64, bool) {
	for _, r := range t.recent {
		if slices.Equal(r.bounds, b) {
			return r.id, true
		}
	}
	id, ok := t.ids[string(encodeBounds(b))]
	if ok {
		if len(t.recent) == 8 {
			t.recent = t.recent[1:]
		}
		t.recent = append(t.recent, recentBounds{t.bounds[id], id})
	}
	return id, ok
}

func encodeBounds(b []float64) []byte {
	out := make([]byte, 8*len(b))
	for i, v := range b {
		binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
	}
	return out
}

func loadBounds(ctx context.Context, q querier) (*boundsTable, error) {
	t := &boundsTable{ids: map[string]int64{}, bounds: map[int64][]float64{}}
	rows, err := q.QueryContext(ctx, "SELECT id, bounds FROM telemetry_bounds")
	if err != nil {
		return nil, fmt.Errorf("load histogram bounds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("load histogram bounds: %w", err)
		}
		b := make([]float64, len(raw)/8)
		for i := range b {
			b[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		t.ids[string(raw)] = id
		t.bounds[id] = b
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load histogram bounds: %w", err)
	}
	return t, nil
}

// room checks that the histogram bounds of b new to the store fit in
// maxBoundSets: every row repeats its bounds' id, and the table is read
// whole by every ingest and query, so agents sending ever new bounds must
// not grow it without end.
func (t *boundsTable) room(b *agentv1.TelemetryBatch) error {
	var fresh map[string]bool
	for _, d := range b.GetDeployments() {
		for _, h := range []*agentv1.Histogram{d.GetQueueSeconds(), d.GetComputeSeconds(), d.GetRequestSeconds(), d.GetBatchSize()} {
			if len(h.GetCounts()) == 0 {
				continue
			}
			if _, ok := t.lookup(h.GetBounds()); ok {
				continue
			}
			if fresh == nil {
				fresh = map[string]bool{}
			}
			fresh[string(encodeBounds(h.GetBounds()))] = true
		}
	}
	if len(fresh) > 0 && len(t.ids)+len(fresh) > maxBoundSets {
		return fmt.Errorf("histogram bounds: %d new sets of bounds, the store holds %d of at most %d: expected the bounds the fleet already uses",
			len(fresh), len(t.ids), maxBoundSets)
	}
	return nil
}

// intern returns the id of b, inserting it if new.
func (t *boundsTable) intern(ctx context.Context, tx *sql.Tx, b []float64) (int64, error) {
	if id, ok := t.lookup(b); ok {
		return id, nil
	}
	key := encodeBounds(b)
	r, err := tx.ExecContext(ctx, "INSERT INTO telemetry_bounds (bounds) VALUES (?)", key)
	if err != nil {
		return 0, fmt.Errorf("store histogram bounds: %w", err)
	}
	id, err := r.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store histogram bounds: %w", err)
	}
	t.ids[string(key)] = id
	t.bounds[id] = slices.Clone(b)
	return id, nil
}

// encodeData writes d as: uvarint number of outcomes, each (uvarint
// length, name, uvarint count) in name order; then per histogram a uvarint
// bounds id (0: absent) and, if present, the sum (8 bytes, little endian),
// a uvarint number of counts and the counts as uvarints.
func (t *boundsTable) encodeData(ctx context.Context, tx *sql.Tx, d *reqData, buf []byte) ([]byte, error) {
	buf = buf[:0]
	names := slices.Sorted(maps.Keys(d.outcomes))
	buf = binary.AppendUvarint(buf, uint64(len(names)))
	for _, n := range names {
		buf = binary.AppendUvarint(buf, uint64(len(n)))
		buf = append(buf, n...)
		buf = binary.AppendUvarint(buf, d.outcomes[n])
	}
	for _, h := range d.h {
		if h.empty() {
			buf = binary.AppendUvarint(buf, 0)
			continue
		}
		id, err := t.intern(ctx, tx, h.bounds)
		if err != nil {
			return nil, err
		}
		buf = binary.AppendUvarint(buf, uint64(id))
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(h.sum))
		buf = binary.AppendUvarint(buf, uint64(len(h.counts)))
		for _, c := range h.counts {
			buf = binary.AppendUvarint(buf, c)
		}
	}
	return buf, nil
}

var errBadData = errors.New("damaged telemetry data")

func (t *boundsTable) decodeData(b []byte) (*reqData, error) {
	d := &reqData{}
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errBadData
		}
		b = b[n:]
		return v, nil
	}
	n, err := next()
	if err != nil || n > uint64(len(b)) {
		return nil, errBadData
	}
	d.outcomes = make(map[string]uint64, n)
	for range n {
		l, err := next()
		if err != nil || l > uint64(len(b)) {
			return nil, errBadData
		}
		name := string(b[:l])
		b = b[l:]
		c, err := next()
		if err != nil {
			return nil, err
		}
		d.outcomes[name] = c
	}
	for i := range d.h {
		id, err := next()
		if err != nil {
			return nil, err
		}
		if id == 0 {
			continue
		}
		bounds, ok := t.bounds[int64(id)]
		if !ok || len(b) < 8 {
			return nil, errBadData
		}
		sum := math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		nc, err := next()
		if err != nil || nc != uint64(len(bounds))+1 {
			return nil, errBadData
		}
		counts := make([]uint64, nc)
		for j := range counts {
			if counts[j], err = next(); err != nil {
				return nil, err
			}
		}
		d.h[i] = hist{bounds: bounds, counts: counts, sum: sum}
	}
	if len(b) != 0 {
		return nil, errBadData
	}
	return d, nil
}

// checkBatch checks one batch against the limits; the error says which
// field of which entry is wrong and what was expected.
func checkBatch(b *agentv1.TelemetryBatch, now time.Time) error {
	if b == nil {
		return errors.New("empty batch")
	}
	if b.GetSeq() == 0 || b.GetSeq() > math.MaxInt64 {
		return fmt.Errorf("seq %d: expected 1 to %d", b.GetSeq(), int64(math.MaxInt64))
	}
	if b.GetFirstSeq() > b.GetSeq() {
		return fmt.Errorf("first_seq %d: expected at most seq %d", b.GetFirstSeq(), b.GetSeq())
	}
	start, end := b.GetStartUnixNano(), b.GetEndUnixNano()
	if start < minBatchTime {
		return fmt.Errorf("start_unix_nano %d: expected a time after 2000-01-01", start)
	}
	if end < start || end-start > int64(maxBatchSpan) {
		return fmt.Errorf("end_unix_nano %d: expected from start_unix_nano %d to %s later", end, start, maxBatchSpan)
	}
	if limit := now.Add(maxClockSkew).UnixNano(); end > limit {
		return fmt.Errorf("end_unix_nano %d (%s): expected at most %s after the hub's clock (%s)",
			end, fromNanos(end).Format(time.RFC3339), maxClockSkew, now.UTC().Format(time.RFC3339))
	}
	if b.GetDroppedBatches() > math.MaxInt64 {
		return fmt.Errorf("dropped_batches %d: expected at most %d", b.GetDroppedBatches(), int64(math.MaxInt64))
	}
	if a := b.GetAgent(); a != nil {
		if err := checkAgentFigures(a); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	if len(b.GetDeployments()) > maxBatchEntries {
		return fmt.Errorf("deployments: %d entries, expected at most %d", len(b.GetDeployments()), maxBatchEntries)
	}
	type key struct {
		name    string
		version uint32
	}
	seen := make(map[key]bool, len(b.GetDeployments()))
	for i, d := range b.GetDeployments() {
		if d.GetName() == "" || len(d.GetName()) > maxTelemetryName {
			return fmt.Errorf("deployments[%d].name %q: expected 1 to %d bytes", i, trunc(d.GetName()), maxTelemetryName)
		}
		k := key{d.GetName(), d.GetModelVersion()}
		if seen[k] {
			return fmt.Errorf("deployments[%d]: deployment %q version %d appears twice, expected one entry per version", i, k.name, k.version)
		}
		seen[k] = true
		if len(d.GetRequests()) > maxOutcomes {
			return fmt.Errorf("deployments[%d].requests: %d outcomes, expected at most %d", i, len(d.GetRequests()), maxOutcomes)
		}
		for o, c := range d.GetRequests() {
			if o == "" || len(o) > maxOutcomeName {
				return fmt.Errorf("deployments[%d].requests: outcome %q: expected 1 to %d bytes", i, trunc(o), maxOutcomeName)
			}
			if c > maxTelemetryCount {
				return fmt.Errorf("deployments[%d].requests[%q] = %d: expected at most %d", i, o, c, uint64(maxTelemetryCount))
			}
		}
		for j, h := range [numHists]*agentv1.Histogram{d.GetQueueSeconds(), d.GetComputeSeconds(), d.GetRequestSeconds(), d.GetBatchSize()} {
			if err := checkHist(h); err != nil {
				return fmt.Errorf("deployments[%d].%s: %w", i, histNames[j], err)
			}
		}
	}
	return nil
}

func checkAgentFigures(a *agentv1.AgentTelemetry) error {
	if v := a.GetProcessCpuSeconds(); math.IsNaN(v) || v < 0 || v > maxTelemetryValue {
		return fmt.Errorf("process_cpu_seconds %v: expected 0 to %g", v, float64(maxTelemetryValue))
	}
	if v := a.GetHostCpuUtilization(); math.IsNaN(v) || v < 0 || v > 1 {
		return fmt.Errorf("host_cpu_utilization %v: expected 0 to 1", v)
	}
	for _, f := range []struct {
		name string
		v    uint64
	}{
		{"process_rss_bytes", a.GetProcessRssBytes()},
		{"host_memory_total_bytes", a.GetHostMemoryTotalBytes()},
		{"host_memory_available_bytes", a.GetHostMemoryAvailableBytes()},
		{"disk_total_bytes", a.GetDiskTotalBytes()},
		{"disk_free_bytes", a.GetDiskFreeBytes()},
		{"uptime_seconds", a.GetUptimeSeconds()},
		{"model_cache_bytes", a.GetModelCacheBytes()},
		{"spool_pending_batches", a.GetSpoolPendingBatches()},
	} {
		if f.v > math.MaxInt64 {
			return fmt.Errorf("%s %d: expected at most %d", f.name, f.v, int64(math.MaxInt64))
		}
	}
	return nil
}

func checkHist(h *agentv1.Histogram) error {
	if h == nil || len(h.GetBounds()) == 0 && len(h.GetCounts()) == 0 {
		return nil // absent
	}
	bounds, counts := h.GetBounds(), h.GetCounts()
	if len(bounds) == 0 || len(bounds) > maxHistBounds {
		return fmt.Errorf("%d bounds: expected 1 to %d", len(bounds), maxHistBounds)
	}
	if len(counts) != len(bounds)+1 {
		return fmt.Errorf("%d counts for %d bounds: expected len(bounds)+1 = %d", len(counts), len(bounds), len(bounds)+1)
	}
	for i, v := range bounds {
		if math.IsNaN(v) || math.Abs(v) > maxTelemetryValue {
			return fmt.Errorf("bounds[%d] = %v: expected a finite number from -%g to %g", i, v, float64(maxTelemetryValue), float64(maxTelemetryValue))
		}
		if i > 0 && v <= bounds[i-1] {
			return fmt.Errorf("bounds[%d] = %v after %v: expected strictly ascending bounds", i, v, bounds[i-1])
		}
	}
	for i, c := range counts {
		if c > maxTelemetryCount {
			return fmt.Errorf("counts[%d] = %d: expected at most %d", i, c, uint64(maxTelemetryCount))
		}
	}
	if s := h.GetSum(); math.IsNaN(s) || math.Abs(s) > maxTelemetryValue {
		return fmt.Errorf("sum %v: expected a finite number from -%g to %g", s, float64(maxTelemetryValue), float64(maxTelemetryValue))
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func histFrom(h *agentv1.Histogram) hist {
	if len(h.GetCounts()) == 0 {
		return hist{}
	}
	return hist{bounds: h.GetBounds(), counts: h.GetCounts(), sum: h.GetSum()}
}

func dataFrom(d *agentv1.DeploymentTelemetry) *reqData {
	r := &reqData{outcomes: make(map[string]uint64, len(d.GetRequests()))}
	for o, c := range d.GetRequests() {
		if c != 0 {
			r.outcomes[o] = c
		}
	}
	r.h[histQueue] = histFrom(d.GetQueueSeconds())
	r.h[histCompute] = histFrom(d.GetComputeSeconds())
	r.h[histRequest] = histFrom(d.GetRequestSeconds())
	r.h[histBatch] = histFrom(d.GetBatchSize())
	return r
}

const minuteNs = int64(time.Minute)

func minuteOf(ns int64) int64 { return ns - ns%minuteNs }

// IngestTelemetry implements hub.TelemetryStore. All uploads are stored in
// one write transaction (the caller group-commits many agents' uploads).
//
// A batch is the agent's unit: a batch that fails validation (see
// checkBatch: histogram shapes, non-finite numbers, absurd times, names or
// counts over the limits) is skipped whole, nothing of it is stored, and
// it is counted in Rejected with a precise error in Invalid (wrapping
// hub.ErrInvalid), so one bad agent never costs the rest of the fleet its
// telemetry. A rejected batch is not recorded as seen. An upload with an
// empty or too long agent id rejects all its batches. Only database errors
// fail the call, and then nothing of it is stored.
func (s *Store) IngestTelemetry(ctx context.Context, uploads []hub.TelemetryUpload) (hub.TelemetryIngest, error) {
	now := s.now()
	var res hub.TelemetryIngest
	err := s.write(ctx, func(tx *sql.Tx) error {
		res = hub.TelemetryIngest{}
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		ins, err := prepareIngest(ctx, tx)
		if err != nil {
			return err
		}
		defer ins.close()
		if err := ins.loadAgents(ctx, tx, uploads); err != nil {
			return err
		}
		totals := map[string]*depTotals{}
		features := newFeatureAcc()
		var buf []byte
		for _, u := range uploads {
			var agent agentRef // looked up with the upload's first valid batch
			for _, b := range u.Batches {
				if u.Agent == "" || len(u.Agent) > maxTelemetryName {
					res.Rejected++
					res.Invalid = append(res.Invalid, fmt.Errorf("telemetry of agent %q seq %d: agent id: expected 1 to %d bytes: %w",
						trunc(u.Agent), b.GetSeq(), maxTelemetryName, hub.ErrInvalid))
					continue
				}
				if err := checkBatch(b, now); err != nil {
					res.Rejected++
					err = fmt.Errorf("telemetry of agent %q seq %d: %w: %w", u.Agent, b.GetSeq(), err, hub.ErrInvalid)
					res.Invalid = append(res.Invalid, err)
					s.log.Warn("telemetry batch rejected", "agent", u.Agent, "seq", b.GetSeq(), "err", err)
					continue
				}
				if err := bt.room(b); err != nil {
					res.Rejected++
					err = fmt.Errorf("telemetry of agent %q seq %d: %w: %w", u.Agent, b.GetSeq(), err, hub.ErrInvalid)
					res.Invalid = append(res.Invalid, err)
					s.log.Warn("telemetry batch rejected", "agent", u.Agent, "seq", b.GetSeq(), "err", err)
					continue
				}
				if agent.id == 0 {
					if agent, err = ins.agentRef(ctx, u.Agent); err != nil {
						return fmt.Errorf("record agent %q: %w", u.Agent, err)
					}
				}
				lo, covers := seqRange(b)
				isNew, err := ins.record(ctx, agent, lo, int64(b.GetSeq()), nanos(now))
				if err != nil {
					return fmt.Errorf("record batch %d of agent %q: %w", b.GetSeq(), u.Agent, err)
				}
				if !isNew {
					res.Duplicates += covers
					continue
				}
				if err := ins.batch(ctx, agent.id, b); err != nil {
					return fmt.Errorf("store batch %d of agent %q: %w", b.GetSeq(), u.Agent, err)
				}
				for _, d := range b.GetDeployments() {
					t := totals[d.GetName()]
					if t == nil {
						if t, err = deploymentRef(ctx, tx, bt, d.GetName()); err != nil {
							return err
						}
						totals[d.GetName()] = t
					}
					data := dataFrom(d)
					if buf, err = bt.encodeData(ctx, tx, data, buf); err != nil {
						return err
					}
					if _, err := ins.raw.ExecContext(ctx, t.id, b.GetStartUnixNano(), agent.id, int64(b.GetSeq()),
						int64(d.GetModelVersion()), b.GetEndUnixNano(), buf); err != nil {
						return fmt.Errorf("store batch %d of agent %q, deployment %q: %w", b.GetSeq(), u.Agent, d.GetName(), err)
					}
					t.data.add(data)
				}
				if err := s.ingestFeaturesTx(ctx, tx, features, u.Agent, b); err != nil {
					return fmt.Errorf("store features of batch %d of agent %q: %w", b.GetSeq(), u.Agent, err)
				}
				if err := s.ingestAgentEventsTx(ctx, tx, u.Agent, b); err != nil {
					return fmt.Errorf("store events of batch %d of agent %q: %w", b.GetSeq(), u.Agent, err)
				}
				res.Stored += covers
			}
		}
		for _, name := range slices.Sorted(maps.Keys(totals)) {
			if err := writeTotals(ctx, tx, bt, name, totals[name]); err != nil {
				return err
			}
		}
		return s.flushFeaturesTx(ctx, tx, features)
	})
	if err != nil {
		return hub.TelemetryIngest{}, fmt.Errorf("ingest telemetry: %w", err)
	}
	return res, nil
}

// agentRef is an agent's row in telemetry_agents: agents are stored by
// this integer id, not their 32-character name, in every other table.
type agentRef struct {
	id, floor int64
}

// depTotals is a deployment's row in telemetry_totals (deployments are
// stored by this id elsewhere) with its running totals.
type depTotals struct {
	id   int64
	data *reqData
}

// deploymentRef reads name's totals row, creating it if new.
func deploymentRef(ctx context.Context, tx *sql.Tx, bt *boundsTable, name string) (*depTotals, error) {
	t := &depTotals{}
	var old []byte
	err := tx.QueryRowContext(ctx, "SELECT id, data FROM telemetry_totals WHERE deployment = ?", name).Scan(&t.id, &old)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		t.data = &reqData{}
		r, err := tx.ExecContext(ctx, "INSERT INTO telemetry_totals (deployment, data) VALUES (?, x'')", name)
		if err != nil {
			return nil, fmt.Errorf("record deployment %q: %w", name, err)
		}
		if t.id, err = r.LastInsertId(); err != nil {
			return nil, fmt.Errorf("record deployment %q: %w", name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read totals of %q: %w", name, err)
	default:
		if t.data, err = bt.decodeData(old); err != nil {
			return nil, fmt.Errorf("totals of %q: %w", name, err)
		}
	}
	return t, nil
}

func writeTotals(ctx context.Context, tx *sql.Tx, bt *boundsTable, name string, t *depTotals) error {
	buf, err := bt.encodeData(ctx, tx, t.data, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE telemetry_totals SET data = ? WHERE id = ?", buf, t.id); err != nil {
		return fmt.Errorf("write totals of %q: %w", name, err)
	}
	return nil
}

// ingestStmts are IngestTelemetry's prepared statements.
type ingestStmts struct {
	agents map[string]agentRef // of this call's uploads, by name

	addAgent, extendLast, findRun, extendRun, addRun, raw, agentRaw *sql.Stmt
}

func prepareIngest(ctx context.Context, tx *sql.Tx) (*ingestStmts, error) {
	st := &ingestStmts{}
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&st.addAgent, "INSERT INTO telemetry_agents (agent, floor) VALUES (?, 0)"},
		// The common case in one statement: seq extends the run that
		// starts closest below it (so no run starts at seq).
		{&st.extendLast, `UPDATE telemetry_seen SET hi = ?1, received_at = ?2 WHERE agent_id = ?3 AND hi = ?1 - 1
			AND lo = (SELECT lo FROM telemetry_seen WHERE agent_id = ?3 AND lo <= ?1 ORDER BY lo DESC LIMIT 1)`},
		// The run starting at or before seq, the closest.
		{&st.findRun, "SELECT lo, hi FROM telemetry_seen WHERE agent_id = ? AND lo <= ? ORDER BY lo DESC LIMIT 1"},
		{&st.extendRun, "UPDATE telemetry_seen SET hi = ?, received_at = ? WHERE agent_id = ? AND lo = ?"},
		{&st.addRun, "INSERT INTO telemetry_seen (agent_id, lo, hi, received_at) VALUES (?, ?, ?, ?)"},
		{&st.raw, `INSERT INTO telemetry_raw (deployment_id, start_ns, agent_id, seq, model_version, end_ns, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&st.agentRaw, `INSERT INTO telemetry_agent_raw (agent_id, start_ns, seq, end_ns, dur_ns, cpu_seconds,
			host_cpu_seconds, fig_end_ns, rss, mem_total, mem_available, disk_total, disk_free, uptime, cache, spool, dropped, batches)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		s, err := tx.PrepareContext(ctx, p.q)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("prepare telemetry statement: %w", err)
		}
		*p.s = s
	}
	return st, nil
}

func (st *ingestStmts) close() {
	for _, s := range []*sql.Stmt{st.addAgent, st.extendLast, st.findRun, st.extendRun, st.addRun, st.raw, st.agentRaw} {
		if s != nil {
			s.Close()
		}
	}
}

// loadAgents reads the rows of the uploads' agents, a few hundred names
// per query (one query per agent costs a fifth of the ingestion).
func (st *ingestStmts) loadAgents(ctx context.Context, tx *sql.Tx, uploads []hub.TelemetryUpload) error {
	st.agents = make(map[string]agentRef, len(uploads))
	var names []any
	flush := func() error {
		if len(names) == 0 {
			return nil
		}
		rows, err := tx.QueryContext(ctx, "SELECT agent, id, floor FROM telemetry_agents WHERE agent IN (?"+strings.Repeat(", ?", len(names)-1)+")", names...)
		if err != nil {
			return fmt.Errorf("read agents: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var a agentRef
			if err := rows.Scan(&name, &a.id, &a.floor); err != nil {
				return fmt.Errorf("read agents: %w", err)
			}
			st.agents[name] = a
		}
		names = names[:0]
		return rows.Err()
	}
	seen := make(map[string]bool, len(uploads))
	for _, u := range uploads {
		if seen[u.Agent] || len(u.Agent) > maxTelemetryName {
			continue
		}
		seen[u.Agent] = true
		if names = append(names, u.Agent); len(names) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// agentRef returns agent's row, creating it if new.
func (st *ingestStmts) agentRef(ctx context.Context, agent string) (agentRef, error) {
	if a, ok := st.agents[agent]; ok {
		return a, nil
	}
	r, err := st.addAgent.ExecContext(ctx, agent)
	if err != nil {
		return agentRef{}, err
	}
	a := agentRef{}
	if a.id, err = r.LastInsertId(); err != nil {
		return agentRef{}, err
	}
	st.agents[agent] = a
	return a, nil
}

// migTelemetryMerged lets a raw agent row stand for the several batches a
// merged batch (first_seq..seq) covers.
const migTelemetryMerged = `ALTER TABLE telemetry_agent_raw ADD COLUMN batches INTEGER NOT NULL DEFAULT 1;`

// seqRange returns the first seq a batch covers (first_seq for a merged
// batch, else seq) and how many batches it covers.
func seqRange(b *agentv1.TelemetryBatch) (lo int64, covers int) {
	lo = int64(b.GetSeq())
	if f := b.GetFirstSeq(); f > 0 {
		lo = int64(f)
	}
	return lo, int(int64(b.GetSeq()) - lo + 1)
}

// record adds seqs lo..seq to the agent's seen runs and reports whether
// they are new: above the floor and in no run. A range that overlaps what
// was seen is not new as a whole (agents merge only batches they never sent,
// so a partial overlap does not happen; if it did, nothing would be counted
// twice). A range right after a run extends it; any other starts a run
// (runs are not merged: out-of-order seqs are rare, and pruning removes
// their runs like any other).
func (st *ingestStmts) record(ctx context.Context, a agentRef, lo, seq, now int64) (bool, error) {
	if lo <= a.floor {
		return false, nil
	}
	if lo < seq {
		var rlo, rhi int64
		err := st.findRun.QueryRowContext(ctx, a.id, seq).Scan(&rlo, &rhi)
		switch {
		case err == nil && rhi >= lo:
			return false, nil
		case err == nil && rhi == lo-1:
			_, err = st.extendRun.ExecContext(ctx, seq, now, a.id, rlo)
		case err == nil || errors.Is(err, sql.ErrNoRows):
			_, err = st.addRun.ExecContext(ctx, a.id, lo, seq, now)
		}
		return err == nil, err
	}
	r, err := st.extendLast.ExecContext(ctx, seq, now, a.id)
	if err != nil {
		return false, err
	}
	if n, err := r.RowsAffected(); err != nil || n == 1 {
		return err == nil, err
	}
	var rlo, rhi int64
	err = st.findRun.QueryRowContext(ctx, a.id, seq).Scan(&rlo, &rhi)
	switch {
	case err == nil && seq <= rhi:
		return false, nil
	case err == nil && seq == rhi+1:
		_, err = st.extendRun.ExecContext(ctx, seq, now, a.id, rlo)
	case err == nil || errors.Is(err, sql.ErrNoRows):
		_, err = st.addRun.ExecContext(ctx, a.id, seq, seq, now)
	}
	return err == nil, err
}

// batch stores the agent's figures of b (a row even without figures, so
// the batch counts and its dropped count is kept).
func (st *ingestStmts) batch(ctx context.Context, agentID int64, b *agentv1.TelemetryBatch) error {
	a := agentAggFrom(b)
	_, err := st.agentRaw.ExecContext(ctx, agentID, b.GetStartUnixNano(), int64(b.GetSeq()), a.endNs, a.durNs, a.cpuSeconds,
		a.hostCPUSeconds, a.figEndNs, a.fig.rss, a.fig.memTotal, a.fig.memAvailable, a.fig.diskTotal, a.fig.diskFree,
		a.fig.uptime, a.fig.cache, a.fig.spool, a.dropped, a.batches)
	return err
}

// agentFigures are an agent's point-in-time figures.
type agentFigures struct {
	rss, memTotal, memAvailable, diskTotal, diskFree, uptime, cache, spool int64
}

// agentAgg sums an agent's batches: raw rows are one batch, rollup rows
// many. durNs, cpuSeconds and hostCPUSeconds (utilization × seconds) sum
// over the batches that carried figures; fig is the newest such batch's
// (ending at figEndNs); dropped is the newest count (it never decreases).
type agentAgg struct {
	batches        int64
	endNs, durNs   int64
	cpuSeconds     float64
	hostCPUSeconds float64
	figEndNs       int64
	fig            agentFigures
	dropped        int64
}

func agentAggFrom(b *agentv1.TelemetryBatch) agentAgg {
	_, covers := seqRange(b)
	a := agentAgg{batches: int64(covers), endNs: b.GetEndUnixNano(), dropped: int64(b.GetDroppedBatches())}
	if f := b.GetAgent(); f != nil {
		a.durNs = b.GetEndUnixNano() - b.GetStartUnixNano()
		a.cpuSeconds = f.GetProcessCpuSeconds()
		a.hostCPUSeconds = f.GetHostCpuUtilization() * float64(a.durNs) / 1e9
		a.figEndNs = b.GetEndUnixNano()
		a.fig = agentFigures{
			rss: int64(f.GetProcessRssBytes()), memTotal: int64(f.GetHostMemoryTotalBytes()),
			memAvailable: int64(f.GetHostMemoryAvailableBytes()), diskTotal: int64(f.GetDiskTotalBytes()),
			diskFree: int64(f.GetDiskFreeBytes()), uptime: int64(f.GetUptimeSeconds()),
			cache: int64(f.GetModelCacheBytes()), spool: int64(f.GetSpoolPendingBatches()),
		}
	}
	return a
}

func (a *agentAgg) add(o agentAgg) {
	a.batches += o.batches
	a.durNs += o.durNs
	a.cpuSeconds += o.cpuSeconds
	a.hostCPUSeconds += o.hostCPUSeconds
	a.endNs = max(a.endNs, o.endNs)
	a.dropped = max(a.dropped, o.dropped)
	if o.figEndNs > a.figEndNs {
		a.figEndNs, a.fig = o.figEndNs, o.fig
	}
}

// agentAggCols are the columns scanAgentAgg reads, after batches.
const agentAggCols = "end_ns, dur_ns, cpu_seconds, host_cpu_seconds, fig_end_ns, rss, mem_total, mem_available, disk_total, disk_free, uptime, cache, spool, dropped"

func (a *agentAgg) dest() []any {
	return []any{&a.batches, &a.endNs, &a.durNs, &a.cpuSeconds, &a.hostCPUSeconds, &a.figEndNs, &a.fig.rss, &a.fig.memTotal,
		&a.fig.memAvailable, &a.fig.diskTotal, &a.fig.diskFree, &a.fig.uptime, &a.fig.cache, &a.fig.spool, &a.dropped}
}

// reqAgg sums request data over rows.
type reqAgg struct {
	data     reqData
	versions map[int]bool
	minNs    int64 // earliest row start
}

func (r *reqAgg) add(version int, startNs int64, d *reqData) {
	if r.versions == nil {
		r.versions = map[int]bool{}
		r.minNs = startNs
	}
	r.versions[version] = true
	r.minNs = min(r.minNs, startNs)
	r.data.add(d)
}

// merge adds o to r.
func (r *reqAgg) merge(o *reqAgg) {
	if o.versions == nil {
		return
	}
	if r.versions == nil {
		r.versions = map[int]bool{}
		r.minNs = o.minNs
	}
	for v := range o.versions {
		r.versions[v] = true
	}
	r.minNs = min(r.minNs, o.minNs)
	r.data.add(&o.data)
}

// metrics turns r into RequestMetrics over a window of seconds (from the
// first row when seconds is 0: an open window).
func (r *reqAgg) metrics(seconds float64, untilNs int64) hub.RequestMetrics {
	m := hub.RequestMetrics{ByOutcome: map[string]uint64{}}
	if r == nil || r.versions == nil {
		return m
	}
	for o, c := range r.data.outcomes {
		m.ByOutcome[o] = c
		m.Requests += c
		if o != "ok" {
			m.Errors += c
		}
	}
	if seconds <= 0 {
		seconds = float64(untilNs-r.minNs) / 1e9
	}
	if seconds > 0 {
		m.RequestRate = float64(m.Requests) / seconds
	}
	if m.Requests > 0 {
		m.ErrorRate = float64(m.Errors) / float64(m.Requests)
	}
	q := func(h int, p float64) float64 {
		v := r.data.h[h].stats().Quantile(p)
		if math.IsNaN(v) {
			return 0
		}
		return v * 1000
	}
	m.LatencyP50Ms = q(histRequest, 0.50)
	m.LatencyP95Ms = q(histRequest, 0.95)
	m.LatencyP99Ms = q(histRequest, 0.99)
	m.QueueP99Ms = q(histQueue, 0.99)
	m.ComputeP99Ms = q(histCompute, 0.99)
	if b := r.data.h[histBatch]; !b.empty() {
		if n := b.stats().Count(); n > 0 {
			m.BatchSizeMean = b.sum / float64(n)
		}
	}
	for v := range r.versions {
		m.ModelVersions = append(m.ModelVersions, v)
	}
	slices.Sort(m.ModelVersions)
	return m
}

// window resolves q against now: [since, until) in nanoseconds and the
// window's length in seconds (0 when Since is zero: an open window).
func window(q hub.MetricsQuery, now time.Time) (since, until time.Time, err error) {
	since, until = q.Since, q.Until
	if until.IsZero() {
		until = now
	}
	if !since.IsZero() && !until.After(since) {
		return since, until, fmt.Errorf("metrics window: until %s is not after since %s: %w",
			until.UTC().Format(time.RFC3339Nano), since.UTC().Format(time.RFC3339Nano), hub.ErrInvalid)
	}
	return since.UTC(), until.UTC(), nil
}

func windowNanos(since, until time.Time) (int64, int64, float64) {
	var s int64
	var secs float64
	if !since.IsZero() {
		s = nanos(since)
		secs = until.Sub(since).Seconds()
	}
	return s, nanos(until), secs
}

// DeploymentMetrics implements hub.TelemetryStore. Raw rows count when
// their batch starts in the window; beyond the raw window, where only
// 1-minute rollups remain, a minute counts when it starts in the window.
// It reads one snapshot; cost is linear in the rows of the window.
func (s *Store) DeploymentMetrics(ctx context.Context, name string, q hub.MetricsQuery) (hub.DeploymentMetrics, error) {
	since, until, err := window(q, s.now())
	if err != nil {
		return hub.DeploymentMetrics{}, err
	}
	sinceNs, untilNs, secs := windowNanos(since, until)
	out := hub.DeploymentMetrics{Deployment: name, Since: since, Until: until}
	aggs := map[string]*reqAgg{}
	err = s.read(ctx, func(tx *sql.Tx) error {
		var known bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deployments WHERE name = ?1)
			OR EXISTS (SELECT 1 FROM telemetry_totals WHERE deployment = ?1)`, name).Scan(&known); err != nil {
			return err
		}
		if !known {
			return fmt.Errorf("deployment %q: %w", name, hub.ErrNotFound)
		}
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		filter := ""
		args := []any{name, sinceNs, untilNs}
		if q.Agent != "" {
			filter = " AND r.agent_id = (SELECT id FROM telemetry_agents WHERE agent = ?)"
			args = append(args, q.Agent)
		}
		// CROSS JOIN keeps the range scan of the deployment's rows outer.
		for _, query := range []string{
			`SELECT a.agent, r.model_version, r.start_ns, r.data FROM telemetry_raw r CROSS JOIN telemetry_agents a
				WHERE r.deployment_id = (SELECT id FROM telemetry_totals WHERE deployment = ?) AND r.start_ns >= ? AND r.start_ns < ?
				AND a.id = r.agent_id` + filter,
			`SELECT a.agent, r.model_version, r.minute, r.data FROM telemetry_rollup r CROSS JOIN telemetry_agents a
				WHERE r.deployment_id = (SELECT id FROM telemetry_totals WHERE deployment = ?) AND r.minute >= ? AND r.minute < ?
				AND a.id = r.agent_id` + filter,
		} {
			if err := scanReq(ctx, tx, bt, query, args, aggs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return hub.DeploymentMetrics{}, fmt.Errorf("metrics of deployment %q: %w", name, err)
	}
	total := &reqAgg{}
	out.Agents = []hub.RequestMetrics{}
	for _, a := range slices.Sorted(maps.Keys(aggs)) {
		r := aggs[a]
		total.merge(r)
		m := r.metrics(secs, untilNs)
		m.Agent = a
		m.Deployment = name
		out.Agents = append(out.Agents, m)
	}
	out.Total = total.metrics(secs, untilNs)
	out.Total.Deployment = name
	return out, nil
}

// scanReq adds the rows of query (key, model_version, start, data) to
// aggs by key.
func scanReq(ctx context.Context, tx *sql.Tx, bt *boundsTable, query string, args []any, aggs map[string]*reqAgg) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var version int
		var start int64
		var raw []byte
		if err := rows.Scan(&key, &version, &start, &raw); err != nil {
			return err
		}
		d, err := bt.decodeData(raw)
		if err != nil {
			return fmt.Errorf("row of %q at %s: %w", key, fromNanos(start).Format(time.RFC3339), err)
		}
		a := aggs[key]
		if a == nil {
			a = &reqAgg{}
			aggs[key] = a
		}
		a.add(version, start, d)
	}
	return rows.Err()
}

// AgentMetrics implements hub.TelemetryStore, with the same window rules
// as DeploymentMetrics. An agent is known if enrolled or if it has ever
// sent telemetry.
func (s *Store) AgentMetrics(ctx context.Context, id string, q hub.MetricsQuery) (hub.AgentMetrics, error) {
	since, until, err := window(q, s.now())
	if err != nil {
		return hub.AgentMetrics{}, err
	}
	sinceNs, untilNs, secs := windowNanos(since, until)
	out := hub.AgentMetrics{Agent: id, Since: since, Until: until}
	aggs := map[string]*reqAgg{}
	var agg agentAgg
	err = s.read(ctx, func(tx *sql.Tx) error {
		var known bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)
			OR EXISTS (SELECT 1 FROM telemetry_agents WHERE agent = ?1)`, id).Scan(&known); err != nil {
			return err
		}
		if !known {
			return fmt.Errorf("agent %q: %w", id, hub.ErrNotFound)
		}
		for _, query := range []string{
			"SELECT batches, " + agentAggCols + " FROM telemetry_agent_raw WHERE agent_id = (SELECT id FROM telemetry_agents WHERE agent = ?) AND start_ns >= ? AND start_ns < ?",
			"SELECT batches, " + agentAggCols + " FROM telemetry_agent_rollup WHERE agent_id = (SELECT id FROM telemetry_agents WHERE agent = ?) AND minute >= ? AND minute < ?",
		} {
			rows, err := tx.QueryContext(ctx, query, id, sinceNs, untilNs)
			if err != nil {
				return err
			}
			for rows.Next() {
				var a agentAgg
				if err := rows.Scan(a.dest()...); err != nil {
					rows.Close()
					return err
				}
				agg.add(a)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		args := []any{id, sinceNs, untilNs}
		for _, query := range []string{
			`SELECT t.deployment, r.model_version, r.start_ns, r.data FROM telemetry_raw r CROSS JOIN telemetry_totals t
				WHERE r.agent_id = (SELECT id FROM telemetry_agents WHERE agent = ?) AND r.start_ns >= ? AND r.start_ns < ? AND t.id = r.deployment_id`,
			`SELECT t.deployment, r.model_version, r.minute, r.data FROM telemetry_rollup r CROSS JOIN telemetry_totals t
				WHERE r.agent_id = (SELECT id FROM telemetry_agents WHERE agent = ?) AND r.minute >= ? AND r.minute < ? AND t.id = r.deployment_id`,
		} {
			if err := scanReq(ctx, tx, bt, query, args, aggs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return hub.AgentMetrics{}, fmt.Errorf("metrics of agent %q: %w", id, err)
	}
	out.Batches = int(agg.batches)
	if agg.batches > 0 {
		out.LastReport = fromNanos(agg.endNs)
	}
	if agg.durNs > 0 {
		d := float64(agg.durNs) / 1e9
		out.CPUCoresMean = agg.cpuSeconds / d
		out.HostCPUUtilizationMean = agg.hostCPUSeconds / d
	}
	out.RSSBytes = uint64(agg.fig.rss)
	out.HostMemoryTotalBytes = uint64(agg.fig.memTotal)
	out.HostMemoryAvailableBytes = uint64(agg.fig.memAvailable)
	out.DiskTotalBytes = uint64(agg.fig.diskTotal)
	out.DiskFreeBytes = uint64(agg.fig.diskFree)
	out.UptimeSeconds = uint64(agg.fig.uptime)
	out.ModelCacheBytes = uint64(agg.fig.cache)
	out.SpoolPendingBatches = uint64(agg.fig.spool)
	out.DroppedBatches = uint64(agg.dropped)
	out.Deployments = []hub.RequestMetrics{}
	for _, d := range slices.Sorted(maps.Keys(aggs)) {
		m := aggs[d].metrics(secs, untilNs)
		m.Agent = id
		m.Deployment = d
		out.Deployments = append(out.Deployments, m)
	}
	return out, nil
}

// TelemetryTotals implements hub.TelemetryStore: one entry per deployment
// that ever sent telemetry, by name. Deployments with no request latency
// histogram have a zero RequestSeconds.
func (s *Store) TelemetryTotals(ctx context.Context) ([]hub.DeploymentTotals, error) {
	var out []hub.DeploymentTotals
	err := s.read(ctx, func(tx *sql.Tx) error {
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT deployment, data FROM telemetry_totals ORDER BY deployment")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var raw []byte
			if err := rows.Scan(&name, &raw); err != nil {
				return err
			}
			d, err := bt.decodeData(raw)
			if err != nil {
				return fmt.Errorf("totals of %q: %w", name, err)
			}
			// Filled in place: the proto Histogram must not be copied.
			out = append(out, hub.DeploymentTotals{Deployment: name, Requests: d.outcomes})
			if h := d.h[histRequest]; !h.empty() {
				t := &out[len(out)-1]
				t.RequestSeconds.Bounds = slices.Clone(h.bounds)
				t.RequestSeconds.Counts = h.counts
				t.RequestSeconds.Sum = h.sum
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry totals: %w", err)
	}
	return out, nil
}

// PruneTelemetry implements hub.TelemetryStore. Zero fields of p take the
// defaults (DefaultTelemetryRaw, DefaultTelemetryRollups).
//
// Raw rows whose batch started before now-p.Raw, rounded down to the
// minute, are folded into their minute's rollup (added to it if it exists:
// a late batch joins its minute) and deleted in the same transaction;
// rollups whose minute is before now-p.Rollups are deleted; dedup runs
// last extended before now-p.Raw are deleted in the transaction that
// raises their agents' floors (see migTelemetry). The work is split into
// transactions of about pruneBudget rows (one deployment-minute, or
// several, at a time), so ingestion waits for one chunk at most, never for
// the whole fold; every chunk leaves the data consistent, and on an error
// the counts returned are those of the chunks committed. Then the freed
// pages are returned to the file system (PRAGMA incremental_vacuum, and a
// WAL checkpoint so the file shrinks); BytesFreed counts the pages the
// database gave back.
func (s *Store) PruneTelemetry(ctx context.Context, now time.Time, p hub.TelemetryRetention) (hub.TelemetryPruned, error) {
	if p.Raw < 0 || p.Rollups < 0 {
		return hub.TelemetryPruned{}, fmt.Errorf("prune telemetry: negative retention (raw %s, rollups %s): %w", p.Raw, p.Rollups, hub.ErrInvalid)
	}
	if p.Raw == 0 {
		p.Raw = DefaultTelemetryRaw
	}
	if p.Rollups == 0 {
		p.Rollups = DefaultTelemetryRollups
	}
	c := pruneCuts{raw: minuteOf(nanos(now.Add(-p.Raw))), rollups: nanos(now.Add(-p.Rollups)), seen: nanos(now.Add(-p.Raw))}
	var res hub.TelemetryPruned
	if err := s.pruneChunks(ctx, c, &res); err != nil {
		return res, fmt.Errorf("prune telemetry: %w", err)
	}
	freed, err := s.vacuum(ctx)
	if err != nil {
		return res, fmt.Errorf("prune telemetry: %w", err)
	}
	res.BytesFreed = freed
	return res, nil
}

// pruneBudget is about how many rows one pruning transaction handles.
const pruneBudget = 20_000

type pruneCuts struct{ raw, rollups, seen int64 }

func addPruned(a *hub.TelemetryPruned, b hub.TelemetryPruned) {
	a.RawDeleted += b.RawDeleted
	a.RollupsAdded += b.RollupsAdded
	a.RollupDeleted += b.RollupDeleted
}

// pruneChunk runs fn in its own write transaction and adds its counts to
// res once committed.
func (s *Store) pruneChunk(ctx context.Context, res *hub.TelemetryPruned, fn func(tx *sql.Tx, bt *boundsTable, r *hub.TelemetryPruned) error) error {
	var r hub.TelemetryPruned
	err := s.write(ctx, func(tx *sql.Tx) error {
		r = hub.TelemetryPruned{}
		bt, err := loadBounds(ctx, tx)
		if err != nil {
			return err
		}
		return fn(tx, bt, &r)
	})
	if err != nil {
		return err
	}
	addPruned(res, r)
	return nil
}

func (s *Store) pruneChunks(ctx context.Context, c pruneCuts, res *hub.TelemetryPruned) error {
	var deployments, agents []int64
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		if deployments, err = telemetryIDs(ctx, tx, "SELECT id FROM telemetry_totals"); err != nil {
			return err
		}
		agents, err = telemetryIDs(ctx, tx, "SELECT id FROM telemetry_agents")
		return err
	})
	if err != nil {
		return err
	}
	// Deployments: a minute at a time, the oldest first, until the budget.
	for _, dep := range deployments {
		for done := false; !done; {
			err := s.pruneChunk(ctx, res, func(tx *sql.Tx, bt *boundsTable, r *hub.TelemetryPruned) error {
				for r.RawDeleted < pruneBudget {
					var first sql.NullInt64
					if err := tx.QueryRowContext(ctx, "SELECT min(start_ns) FROM telemetry_raw WHERE deployment_id = ?", dep).Scan(&first); err != nil {
						return err
					}
					if !first.Valid || first.Int64 >= c.raw {
						done = true
						break
					}
					if err := foldDeployment(ctx, tx, bt, dep, min(minuteOf(first.Int64)+minuteNs, c.raw), r); err != nil {
						return err
					}
				}
				if !done {
					return nil
				}
				d, err := tx.ExecContext(ctx, "DELETE FROM telemetry_rollup WHERE deployment_id = ? AND minute < ?", dep, c.rollups)
				if err != nil {
					return err
				}
				n, _ := d.RowsAffected()
				r.RollupDeleted += n
				return nil
			})
			if err != nil {
				return fmt.Errorf("deployment %d: %w", dep, err)
			}
		}
	}
	// Agents: whole agents, until the budget.
	for len(agents) > 0 {
		err := s.pruneChunk(ctx, res, func(tx *sql.Tx, _ *boundsTable, r *hub.TelemetryPruned) error {
			for len(agents) > 0 && r.RawDeleted+r.RollupDeleted < pruneBudget {
				if err := foldAgent(ctx, tx, agents[0], c.raw, c.rollups, r); err != nil {
					return fmt.Errorf("agent %d: %w", agents[0], err)
				}
				agents = agents[1:]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Dedup runs last extended before the window: their seqs go below
	// the floor in the transaction that deletes them. The table has a few
	// rows per agent, so one transaction does.
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE telemetry_agents SET floor = max(floor, (SELECT max(hi)
			FROM telemetry_seen WHERE agent_id = telemetry_agents.id AND received_at < ?1))
			WHERE id IN (SELECT agent_id FROM telemetry_seen WHERE received_at < ?1)`, c.seen); err != nil {
			return fmt.Errorf("raise dedup floors: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM telemetry_seen WHERE received_at < ?", c.seen); err != nil {
			return fmt.Errorf("delete dedup records: %w", err)
		}
		return nil
	})
}

func telemetryIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

type rollupKey struct {
	minute, agent, version int64
}

// foldDeployment folds dep's raw rows that start before rawCut into
// rollups and deletes them.
func foldDeployment(ctx context.Context, tx *sql.Tx, bt *boundsTable, dep, rawCut int64, res *hub.TelemetryPruned) error {
	groups := map[rollupKey]*reqData{}
	rows, err := tx.QueryContext(ctx, "SELECT start_ns, agent_id, model_version, data FROM telemetry_raw WHERE deployment_id = ? AND start_ns < ?", dep, rawCut)
	if err != nil {
		return err
	}
	for rows.Next() {
		var start int64
		var k rollupKey
		var raw []byte
		if err := rows.Scan(&start, &k.agent, &k.version, &raw); err != nil {
			rows.Close()
			return err
		}
		d, err := bt.decodeData(raw)
		if err != nil {
			rows.Close()
			return err
		}
		k.minute = minuteOf(start)
		g := groups[k]
		if g == nil {
			g = &reqData{}
			groups[k] = g
		}
		g.add(d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var buf []byte
	for k, d := range groups {
		var old []byte
		err := tx.QueryRowContext(ctx, "SELECT data FROM telemetry_rollup WHERE deployment_id = ? AND minute = ? AND agent_id = ? AND model_version = ?",
			dep, k.minute, k.agent, k.version).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res.RollupsAdded++
		case err != nil:
			return err
		default:
			prev, err := bt.decodeData(old)
			if err != nil {
				return err
			}
			prev.add(d)
			d = prev
		}
		if buf, err = bt.encodeData(ctx, tx, d, buf); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT OR REPLACE INTO telemetry_rollup (deployment_id, minute, agent_id, model_version, data) VALUES (?, ?, ?, ?, ?)",
			dep, k.minute, k.agent, k.version, buf); err != nil {
			return err
		}
	}
	r, err := tx.ExecContext(ctx, "DELETE FROM telemetry_raw WHERE deployment_id = ? AND start_ns < ?", dep, rawCut)
	if err != nil {
		return err
	}
	n, _ := r.RowsAffected()
	res.RawDeleted += n
	return nil
}

func foldAgent(ctx context.Context, tx *sql.Tx, agent, rawCut, rollCut int64, res *hub.TelemetryPruned) error {
	groups := map[int64]*agentAgg{}
	rows, err := tx.QueryContext(ctx, "SELECT start_ns, batches, "+agentAggCols+" FROM telemetry_agent_raw WHERE agent_id = ? AND start_ns < ?", agent, rawCut)
	if err != nil {
		return err
	}
	for rows.Next() {
		var start int64
		var a agentAgg
		if err := rows.Scan(append([]any{&start}, a.dest()...)...); err != nil {
			rows.Close()
			return err
		}
		m := minuteOf(start)
		if g := groups[m]; g != nil {
			g.add(a)
		} else {
			groups[m] = &a
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for m, g := range groups {
		var prev agentAgg
		err := tx.QueryRowContext(ctx, "SELECT batches, "+agentAggCols+" FROM telemetry_agent_rollup WHERE agent_id = ? AND minute = ?", agent, m).Scan(prev.dest()...)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res.RollupsAdded++
		case err != nil:
			return err
		default:
			g.add(prev)
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO telemetry_agent_rollup (agent_id, minute, batches, `+agentAggCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			agent, m, g.batches, g.endNs, g.durNs, g.cpuSeconds, g.hostCPUSeconds, g.figEndNs, g.fig.rss, g.fig.memTotal,
			g.fig.memAvailable, g.fig.diskTotal, g.fig.diskFree, g.fig.uptime, g.fig.cache, g.fig.spool, g.dropped); err != nil {
			return err
		}
	}
	r, err := tx.ExecContext(ctx, "DELETE FROM telemetry_agent_raw WHERE agent_id = ? AND start_ns < ?", agent, rawCut)
	if err != nil {
		return err
	}
	n, _ := r.RowsAffected()
	res.RawDeleted += n
	r, err = tx.ExecContext(ctx, "DELETE FROM telemetry_agent_rollup WHERE agent_id = ? AND minute < ?", agent, rollCut)
	if err != nil {
		return err
	}
	n, _ = r.RowsAffected()
	res.RollupDeleted += n
	return nil
}

// vacuum returns the database's free pages to the file system and reports
// the bytes given back. It needs auto_vacuum = INCREMENTAL (see
// ensureIncrementalVacuum).
func (s *Store) vacuum(ctx context.Context) (int64, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var pageSize, before, after int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return 0, fmt.Errorf("page size: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&before); err != nil {
		return 0, fmt.Errorf("page count: %w", err)
	}
	// Each step of the pragma frees pages: drain it.
	rows, err := conn.QueryContext(ctx, "PRAGMA incremental_vacuum")
	if err != nil {
		return 0, fmt.Errorf("incremental vacuum: %w", err)
	}
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("incremental vacuum: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&after); err != nil {
		return 0, fmt.Errorf("page count: %w", err)
	}
	// The file shrinks when the WAL is checkpointed; a checkpoint that
	// readers keep from finishing is done by a later one.
	var busy, logPages, done int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	return (before - after) * pageSize, nil
}

// ensureIncrementalVacuum converts a database created without
// auto_vacuum = INCREMENTAL (before the telemetry store existed) with one
// VACUUM, which rewrites the whole file: it takes a while on a large
// database, once. New databases are created incremental by Open.
func (s *Store) ensureIncrementalVacuum(ctx context.Context) error {
	var mode int
	if err := s.w.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: read auto_vacuum: %w", err)
	}
	if mode == 2 {
		return nil
	}
	s.log.Info("converting database to incremental vacuum (one full VACUUM)", "auto_vacuum", mode)
	if _, err := s.w.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return fmt.Errorf("sqlite: set auto_vacuum: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("sqlite: vacuum: %w", err)
	}
	return nil
}
