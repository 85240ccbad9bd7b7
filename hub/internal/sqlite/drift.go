package sqlite

import (
	"context"
	"database/sql"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// migDrift creates the drift tables (placeholder until written).
const migDrift = `SELECT 1;`

// ingestFeaturesTx stores the feature summaries of one new (not duplicate)
// telemetry batch of agentID, inside IngestTelemetry's transaction.
func (s *Store) ingestFeaturesTx(ctx context.Context, tx *sql.Tx, agentID string, b *agentv1.TelemetryBatch) error {
	return nil
}
