package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// migTelemetry creates the telemetry tables (placeholder until written).
const migTelemetry = `SELECT 1;`

var errTelemetryTODO = errors.New("telemetry store: not written yet")

func (s *Store) IngestTelemetry(ctx context.Context, uploads []hub.TelemetryUpload) (hub.TelemetryIngest, error) {
	return hub.TelemetryIngest{}, errTelemetryTODO
}

func (s *Store) DeploymentMetrics(ctx context.Context, name string, q hub.MetricsQuery) (hub.DeploymentMetrics, error) {
	return hub.DeploymentMetrics{}, errTelemetryTODO
}

func (s *Store) AgentMetrics(ctx context.Context, id string, q hub.MetricsQuery) (hub.AgentMetrics, error) {
	return hub.AgentMetrics{}, errTelemetryTODO
}

func (s *Store) TelemetryTotals(ctx context.Context) ([]hub.DeploymentTotals, error) {
	return nil, errTelemetryTODO
}

func (s *Store) PruneTelemetry(ctx context.Context, now time.Time, p hub.TelemetryRetention) (hub.TelemetryPruned, error) {
	return hub.TelemetryPruned{}, errTelemetryTODO
}
