package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/sketch"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"google.golang.org/protobuf/proto"
)

// migDrift creates the drift tables.
//
// drift_features has one row per (deployment, model version, minute,
// input, element index): the feature summaries of every batch starting in
// that minute, merged (counts added, means and squared deviations combined
// exactly, sketches merged). The sketch is agentv1.Sketch in protobuf.
// drift_baseline_features holds the same columns for each (deployment,
// version) baseline, described in drift_baselines. drift_state keeps the
// drifting flag per deployment name. drift_captured holds captured inputs
// (KServe v2 JSON bodies), at most maxCapturedPerDeployment per deployment:
// the oldest go first.
const migDrift = `
CREATE TABLE drift_features (
	deployment TEXT NOT NULL,
	version    INTEGER NOT NULL,
	minute     INTEGER NOT NULL,
	input      TEXT NOT NULL,
	idx        INTEGER NOT NULL,
	count      INTEGER NOT NULL,
	mean       REAL NOT NULL,
	m2         REAL NOT NULL,
	min        REAL NOT NULL,
	max        REAL NOT NULL,
	nan_count  INTEGER NOT NULL,
	sketch     BLOB NOT NULL,
	PRIMARY KEY (deployment, version, minute, input, idx)
) WITHOUT ROWID;
CREATE INDEX drift_features_minute ON drift_features (minute);
CREATE TABLE drift_baselines (
	deployment TEXT NOT NULL,
	version    INTEGER NOT NULL,
	source     TEXT NOT NULL,
	since      INTEGER NOT NULL,
	until      INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (deployment, version)
) WITHOUT ROWID;
CREATE TABLE drift_baseline_features (
	deployment TEXT NOT NULL,
	version    INTEGER NOT NULL,
	input      TEXT NOT NULL,
	idx        INTEGER NOT NULL,
	count      INTEGER NOT NULL,
	mean       REAL NOT NULL,
	m2         REAL NOT NULL,
	min        REAL NOT NULL,
	max        REAL NOT NULL,
	nan_count  INTEGER NOT NULL,
	sketch     BLOB NOT NULL,
	PRIMARY KEY (deployment, version, input, idx)
) WITHOUT ROWID;
CREATE TABLE drift_state (
	deployment TEXT PRIMARY KEY,
	drifting   INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE drift_captured (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment TEXT NOT NULL,
	agent      TEXT NOT NULL,
	version    INTEGER NOT NULL,
	time       INTEGER NOT NULL,
	body       BLOB NOT NULL
);
CREATE INDEX drift_captured_deployment ON drift_captured (deployment, id);
`

// Limits of what ingestFeaturesTx stores. An entry beyond them is skipped
// with a warning (the rest of its batch is stored).
const (
	maxFeatureIndex          = 1 << 20
	maxFeaturesPerEntry      = 16384
	maxCapturedBody          = 1 << 20
	maxCapturedPerDeployment = 10_000
	maxCapturedList          = 10_000
)

// featureAgg is a feature summary being merged.
type featureAgg struct {
	count, nan uint64
	mean, m2   float64
	min, max   float64
	sk         *sketch.Sketch
}

// add merges o into a (Chan et al.'s pairwise update of mean and m2).
func (a *featureAgg) add(o *featureAgg) {
	a.addMoments(o)
	a.sk.Merge(o.sk)
}

// addMoments merges o's counts and moments into a, not its sketch.
func (a *featureAgg) addMoments(o *featureAgg) {
	a.nan += o.nan
	if o.count > 0 {
		if a.count == 0 {
			a.mean, a.m2, a.min, a.max = o.mean, o.m2, o.min, o.max
		} else {
			na, nb := float64(a.count), float64(o.count)
			n := na + nb
			d := o.mean - a.mean
			a.mean += d * nb / n
			a.m2 += o.m2 + d*d*na*nb/n
			a.min, a.max = math.Min(a.min, o.min), math.Max(a.max, o.max)
		}
		a.count += o.count
	}
}

func (a *featureAgg) stats(input string, idx int) hub.FeatureStats {
	f := hub.FeatureStats{Input: input, Index: idx, Count: a.count, NaNCount: a.nan, Sketch: a.sk.Proto()}
	if a.count > 0 {
		f.Mean, f.Min, f.Max = a.mean, a.min, a.max
		f.Std = math.Sqrt(max(a.m2, 0) / float64(a.count))
	}
	return f
}

// checkFeature validates one FeatureSummary and returns it as an agg.
func checkFeature(f *agentv1.FeatureSummary) (*featureAgg, error) {
	agg, err := checkMoments(f)
	if err != nil {
		return nil, err
	}
	if agg.sk, err = sketch.FromProto(f.GetSketch()); err != nil {
		return nil, fmt.Errorf("sketch: %w", err)
	}
	return &agg, nil
}

// checkMoments validates a FeatureSummary but for its sketch and returns
// it as an agg without a sketch.
func checkMoments(f *agentv1.FeatureSummary) (featureAgg, error) {
	switch {
	case f.GetInput() == "" || len(f.GetInput()) > maxTelemetryName:
		return featureAgg{}, fmt.Errorf("input name %q: expected 1 to %d bytes", trunc(f.GetInput()), maxTelemetryName)
	case f.GetIndex() > maxFeatureIndex:
		return featureAgg{}, fmt.Errorf("index %d: expected at most %d", f.GetIndex(), maxFeatureIndex)
	case f.GetCount() > maxTelemetryCount || f.GetNanCount() > maxTelemetryCount:
		return featureAgg{}, fmt.Errorf("count %d, nan_count %d: expected at most %d", f.GetCount(), f.GetNanCount(), uint64(maxTelemetryCount))
	}
	if f.GetCount() > 0 {
		for _, v := range []struct {
			name string
			v    float64
		}{{"mean", f.GetMean()}, {"m2", f.GetM2()}, {"min", f.GetMin()}, {"max", f.GetMax()}} {
			if math.IsNaN(v.v) || math.IsInf(v.v, 0) {
				return featureAgg{}, fmt.Errorf("%s %v: expected a finite number", v.name, v.v)
			}
		}
		if f.GetM2() < 0 || f.GetMin() > f.GetMax() {
			return featureAgg{}, fmt.Errorf("m2 %v, min %v, max %v: expected m2 >= 0 and min <= max", f.GetM2(), f.GetMin(), f.GetMax())
		}
	}
	return featureAgg{count: f.GetCount(), nan: f.GetNanCount(), mean: f.GetMean(), m2: f.GetM2(),
		min: f.GetMin(), max: f.GetMax()}, nil
}

type featureKey struct {
	input string
	idx   int
}

// featureAcc merges the feature summaries of every batch stored by one
// IngestTelemetry transaction in memory, so that each (deployment, model
// version, minute) is read and written once per transaction rather than
// once per batch: with a fleet reporting every second, one group commit
// holds hundreds of batches of the same deployment and minute.
type featureAcc struct {
	groups map[featureGroup]*featureGroupAgg
	order  []featureGroup
}

type featureGroup struct {
	deployment      string
	version, minute int64
}

type featureGroupAgg struct {
	merged map[featureKey]*featureAgg
	order  []featureKey
}

func newFeatureAcc() *featureAcc { return &featureAcc{groups: map[featureGroup]*featureGroupAgg{}} }

// ingestFeaturesTx takes the feature summaries of one new (not duplicate)
// telemetry batch of agentID into acc and stores its captured inputs,
// inside IngestTelemetry's transaction. Summaries that are malformed or
// beyond the limits are skipped with a warning naming them; the rest of
// the batch is kept. flushFeaturesTx writes acc at the end.
func (s *Store) ingestFeaturesTx(ctx context.Context, tx *sql.Tx, acc *featureAcc, agentID string, b *agentv1.TelemetryBatch) error {
	minute := minuteOf(b.GetStartUnixNano())
	for _, d := range b.GetDeployments() {
		feats := d.GetFeatures()
		if len(feats) > maxFeaturesPerEntry {
			s.log.Warn("telemetry features skipped", "agent", agentID, "seq", b.GetSeq(), "deployment", d.GetName(),
				"err", fmt.Sprintf("%d feature summaries, at most %d expected", len(feats), maxFeaturesPerEntry))
			feats = nil
		}
		key := featureGroup{d.GetName(), int64(d.GetModelVersion()), minute}
		g := acc.groups[key] // nil until a valid summary of this group is held
		for i, f := range feats {
			// A summary merges into the one already held for its feature
			// straight from the wire (MergeProto validates the sketch and
			// changes nothing on an error); only the first of each feature
			// builds a sketch. Hundreds of batches of one deployment and
			// minute meet in a group commit, so this saves a sketch per
			// feature per batch.
			k := featureKey{f.GetInput(), int(f.GetIndex())}
			var m *featureAgg
			if g != nil {
				m = g.merged[k]
			}
			var agg *featureAgg
			var moments featureAgg
			var err error
			if m == nil {
				agg, err = checkFeature(f)
			} else if moments, err = checkMoments(f); err == nil {
				if err = m.sk.MergeProto(f.GetSketch()); err != nil {
					err = fmt.Errorf("sketch: %w", err)
				}
			}
			if err != nil {
				s.log.Warn("telemetry feature skipped", "agent", agentID, "seq", b.GetSeq(), "deployment", d.GetName(),
					"feature", i, "err", fmt.Errorf("features[%d]: %w", i, err))
				continue
			}
			if m != nil {
				m.addMoments(&moments)
				continue
			}
			if g == nil {
				g = &featureGroupAgg{merged: map[featureKey]*featureAgg{}}
				acc.groups[key] = g
				acc.order = append(acc.order, key)
			}
			g.merged[k] = agg
			g.order = append(g.order, k)
		}
		if err := s.captureTx(ctx, tx, agentID, b, d); err != nil {
			return err
		}
	}
	return nil
}

// flushFeaturesTx merges what acc holds into the stored rows: one read of
// each (deployment, version, minute), then one write per feature.
func (s *Store) flushFeaturesTx(ctx context.Context, tx *sql.Tx, acc *featureAcc) error {
	if len(acc.order) == 0 {
		return nil
	}
	get, err := tx.PrepareContext(ctx, `SELECT input, idx, count, mean, m2, min, max, nan_count, sketch FROM drift_features
		WHERE deployment = ? AND version = ? AND minute = ?`)
	if err != nil {
		return err
	}
	defer get.Close()
	put, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO drift_features
		(deployment, version, minute, input, idx, count, mean, m2, min, max, nan_count, sketch)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer put.Close()
	for _, key := range acc.order {
		g := acc.groups[key]
		stored, err := minuteRows(ctx, get, key.deployment, key.version, key.minute, g.merged)
		if err != nil {
			return fmt.Errorf("read features of %q: %w", key.deployment, err)
		}
		for _, k := range g.order {
			agg := g.merged[k]
			if old := stored[k]; old != nil {
				old.add(agg)
				agg = old
			}
			blob, err := proto.Marshal(agg.sk.Proto())
			if err != nil {
				return err
			}
			if _, err := put.ExecContext(ctx, key.deployment, key.version, key.minute, k.input, k.idx,
				int64(agg.count), agg.mean, agg.m2, agg.min, agg.max, int64(agg.nan), blob); err != nil {
				return fmt.Errorf("store features of %q: %w", key.deployment, err)
			}
		}
	}
	return nil
}

// captureTx appends d's captured inputs and trims the deployment's oldest
// beyond maxCapturedPerDeployment.
func (s *Store) captureTx(ctx context.Context, tx *sql.Tx, agentID string, b *agentv1.TelemetryBatch, d *agentv1.DeploymentTelemetry) error {
	added := 0
	for i, body := range d.GetCaptured() {
		if len(body) > maxCapturedBody || !json.Valid(body) {
			s.log.Warn("captured input skipped", "agent", agentID, "seq", b.GetSeq(), "deployment", d.GetName(),
				"err", fmt.Sprintf("captured[%d]: %d bytes: expected a JSON body of at most %d bytes", i, len(body), maxCapturedBody))
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO drift_captured (deployment, agent, version, time, body) VALUES (?, ?, ?, ?, ?)`,
			d.GetName(), agentID, int64(d.GetModelVersion()), b.GetEndUnixNano(), body); err != nil {
			return fmt.Errorf("store captured input of %q: %w", d.GetName(), err)
		}
		added++
	}
	if added == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM drift_captured WHERE deployment = ?1 AND id <= (
		SELECT id FROM drift_captured WHERE deployment = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
		d.GetName(), maxCapturedPerDeployment)
	if err != nil {
		return fmt.Errorf("trim captured inputs of %q: %w", d.GetName(), err)
	}
	return nil
}

// minuteRows reads the stored rows of one (deployment, version, minute)
// whose feature is in want.
func minuteRows(ctx context.Context, get *sql.Stmt, name string, version, minute int64, want map[featureKey]*featureAgg) (map[featureKey]*featureAgg, error) {
	rows, err := get.QueryContext(ctx, name, version, minute)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[featureKey]*featureAgg{}
	for rows.Next() {
		var k featureKey
		var a featureAgg
		var count, nan int64
		var blob []byte
		if err := rows.Scan(&k.input, &k.idx, &count, &a.mean, &a.m2, &a.min, &a.max, &nan, &blob); err != nil {
			return nil, err
		}
		if want[k] == nil {
			continue
		}
		a.count, a.nan = uint64(count), uint64(nan)
		var p agentv1.Sketch
		if err := proto.Unmarshal(blob, &p); err != nil {
			return nil, fmt.Errorf("stored sketch of %s[%d]: %w", k.input, k.idx, err)
		}
		if a.sk, err = sketch.FromProto(&p); err != nil {
			return nil, fmt.Errorf("stored sketch of %s[%d]: %w", k.input, k.idx, err)
		}
		out[k] = &a
	}
	return out, rows.Err()
}

// FeatureWindow implements hub.DriftStore.
func (s *Store) FeatureWindow(ctx context.Context, name string, version int, since, until time.Time) ([]hub.FeatureStats, error) {
	var out []hub.FeatureStats
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT input, idx, count, mean, m2, min, max, nan_count, sketch FROM drift_features
			WHERE deployment = ? AND version = ? AND minute >= ? AND minute < ? ORDER BY input, idx`,
			name, version, nanos(since), nanos(until))
		if err != nil {
			return err
		}
		defer rows.Close()
		var cur *featureAgg
		var ck featureKey
		for rows.Next() {
			var k featureKey
			var a featureAgg
			var count, nan int64
			var blob []byte
			if err := rows.Scan(&k.input, &k.idx, &count, &a.mean, &a.m2, &a.min, &a.max, &nan, &blob); err != nil {
				return err
			}
			a.count, a.nan = uint64(count), uint64(nan)
			var p agentv1.Sketch
			if err := proto.Unmarshal(blob, &p); err != nil {
				return fmt.Errorf("stored sketch of %s[%d]: %w", k.input, k.idx, err)
			}
			if a.sk, err = sketch.FromProto(&p); err != nil {
				return fmt.Errorf("stored sketch of %s[%d]: %w", k.input, k.idx, err)
			}
			if cur != nil && k == ck {
				cur.add(&a)
				continue
			}
			if cur != nil {
				out = append(out, cur.stats(ck.input, ck.idx))
			}
			cur, ck = &a, k
		}
		if cur != nil {
			out = append(out, cur.stats(ck.input, ck.idx))
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("features of deployment %q: %w", name, err)
	}
	return out, nil
}

// FirstFeatureTime implements hub.DriftStore.
func (s *Store) FirstFeatureTime(ctx context.Context, name string, version int) (time.Time, error) {
	var first sql.NullInt64
	err := s.read(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT MIN(minute) FROM drift_features WHERE deployment = ? AND version = ?`,
			name, version).Scan(&first)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("features of deployment %q: %w", name, err)
	}
	if !first.Valid {
		return time.Time{}, nil
	}
	return fromNanos(first.Int64), nil
}

// DriftBaseline implements hub.DriftStore.
func (s *Store) DriftBaseline(ctx context.Context, name string, version int) (hub.DriftBaseline, error) {
	var b hub.DriftBaseline
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		b, err = baselineTx(ctx, tx, name, version)
		return err
	})
	return b, err
}

func baselineTx(ctx context.Context, tx *sql.Tx, name string, version int) (hub.DriftBaseline, error) {
	b := hub.DriftBaseline{Deployment: name, Version: version}
	var since, until, created int64
	err := tx.QueryRowContext(ctx, `SELECT source, since, until, created_at FROM drift_baselines WHERE deployment = ? AND version = ?`,
		name, version).Scan(&b.Source, &since, &until, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("drift baseline of deployment %q version %d: %w", name, version, hub.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("drift baseline of deployment %q: %w", name, err)
	}
	if since != 0 {
		b.Since = fromNanos(since)
	}
	if until != 0 {
		b.Until = fromNanos(until)
	}
	b.CreatedAt = fromNanos(created)
	rows, err := tx.QueryContext(ctx, `SELECT input, idx, count, mean, m2, min, max, nan_count, sketch FROM drift_baseline_features
		WHERE deployment = ? AND version = ? ORDER BY input, idx`, name, version)
	if err != nil {
		return b, err
	}
	defer rows.Close()
	for rows.Next() {
		var k featureKey
		var a featureAgg
		var count, nan int64
		var blob []byte
		if err := rows.Scan(&k.input, &k.idx, &count, &a.mean, &a.m2, &a.min, &a.max, &nan, &blob); err != nil {
			return b, err
		}
		a.count, a.nan = uint64(count), uint64(nan)
		var p agentv1.Sketch
		if err := proto.Unmarshal(blob, &p); err != nil {
			return b, fmt.Errorf("stored baseline sketch of %s[%d]: %w", k.input, k.idx, err)
		}
		if a.sk, err = sketch.FromProto(&p); err != nil {
			return b, fmt.Errorf("stored baseline sketch of %s[%d]: %w", k.input, k.idx, err)
		}
		b.Features = append(b.Features, a.stats(k.input, k.idx))
	}
	return b, rows.Err()
}

// SetDriftBaseline implements hub.DriftStore. Features must be valid: a
// sketch FromProto rejects, a non-finite figure, or a repeated (input,
// index) is ErrInvalid and stores nothing.
func (s *Store) SetDriftBaseline(ctx context.Context, b hub.DriftBaseline) (hub.DriftBaseline, error) {
	if b.Deployment == "" || b.Source == "" {
		return b, fmt.Errorf("drift baseline: deployment and source are required: %w", hub.ErrInvalid)
	}
	blobs := make([][]byte, len(b.Features))
	seen := map[featureKey]bool{}
	for i, f := range b.Features {
		k := featureKey{f.Input, f.Index}
		if f.Input == "" || f.Index < 0 || seen[k] {
			return b, fmt.Errorf("drift baseline of %q: features[%d] %s[%d]: expected a unique input name and index >= 0: %w",
				b.Deployment, i, f.Input, f.Index, hub.ErrInvalid)
		}
		seen[k] = true
		for _, v := range []float64{f.Mean, f.Std, f.Min, f.Max} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return b, fmt.Errorf("drift baseline of %q: features[%d] %s[%d]: non-finite figure %v: %w", b.Deployment, i, f.Input, f.Index, v, hub.ErrInvalid)
			}
		}
		if _, err := sketch.FromProto(f.Sketch); err != nil {
			return b, fmt.Errorf("drift baseline of %q: features[%d] %s[%d]: %w: %w", b.Deployment, i, f.Input, f.Index, err, hub.ErrInvalid)
		}
		var err error
		if blobs[i], err = proto.Marshal(f.Sketch); err != nil {
			return b, err
		}
	}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = s.now()
	}
	var stored hub.DriftBaseline
	err := s.write(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO drift_baselines (deployment, version, source, since, until, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, b.Deployment, b.Version, b.Source, zeroNanos(b.Since), zeroNanos(b.Until), nanos(b.CreatedAt))
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			for i, f := range b.Features {
				m2 := f.Std * f.Std * float64(f.Count)
				if _, err := tx.ExecContext(ctx, `INSERT INTO drift_baseline_features
					(deployment, version, input, idx, count, mean, m2, min, max, nan_count, sketch)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, b.Deployment, b.Version, f.Input, f.Index,
					int64(f.Count), f.Mean, m2, f.Min, f.Max, int64(f.NaNCount), blobs[i]); err != nil {
					return err
				}
			}
		}
		stored, err = baselineTx(ctx, tx, b.Deployment, b.Version)
		return err
	})
	if err != nil {
		return hub.DriftBaseline{}, fmt.Errorf("set drift baseline of %q: %w", b.Deployment, err)
	}
	return stored, nil
}

func zeroNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return nanos(t)
}

// SetDrifting implements hub.DriftStore.
func (s *Store) SetDrifting(ctx context.Context, name string, drifting bool) (bool, error) {
	var was bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var prev int64
		switch err := tx.QueryRowContext(ctx, `SELECT drifting FROM drift_state WHERE deployment = ?`, name).Scan(&prev); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		}
		was = prev != 0
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO drift_state (deployment, drifting, updated_at) VALUES (?, ?, ?)`,
			name, drifting, nanos(s.now()))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set drifting of %q: %w", name, err)
	}
	return was, nil
}

// DriftingDeployments implements hub.DriftStore.
func (s *Store) DriftingDeployments(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT deployment FROM drift_state WHERE drifting != 0`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			out[n] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("drifting deployments: %w", err)
	}
	return out, nil
}

// CapturedInputs implements hub.DriftStore.
func (s *Store) CapturedInputs(ctx context.Context, name string, after int64, limit int) ([]hub.CapturedInput, error) {
	if limit <= 0 || limit > maxCapturedList {
		limit = maxCapturedList
	}
	var out []hub.CapturedInput
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, agent, version, time, body FROM drift_captured
			WHERE deployment = ? AND id > ? ORDER BY id LIMIT ?`, name, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c := hub.CapturedInput{Deployment: name}
			var t int64
			var body []byte
			if err := rows.Scan(&c.ID, &c.Agent, &c.Version, &t, &body); err != nil {
				return err
			}
			c.Time, c.Body = fromNanos(t), body
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("captured inputs of %q: %w", name, err)
	}
	return out, nil
}

// PruneDrift implements hub.DriftStore.
func (s *Store) PruneDrift(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM drift_features WHERE minute < ?`, nanos(before))
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune drift features: %w", err)
	}
	return n, nil
}
