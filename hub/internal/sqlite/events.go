package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/atelier-ml/atelier/hub"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// migEvents creates the event log (placeholder until written).
const migEvents = `SELECT 1;`

// ingestAgentEventsTx records the events of one new (not duplicate)
// telemetry batch of agentID, inside IngestTelemetry's transaction.
func (s *Store) ingestAgentEventsTx(ctx context.Context, tx *sql.Tx, agentID string, b *agentv1.TelemetryBatch) error {
	return nil
}

func (s *Store) AddEvent(ctx context.Context, e hub.Event) (hub.Event, error) {
	return hub.Event{}, errors.New("event store: not written yet")
}

func (s *Store) ListEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error) {
	return nil, errors.New("event store: not written yet")
}
