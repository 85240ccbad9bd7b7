package sqlite

// migTelemetry creates the telemetry tables (placeholder until written).
const migTelemetry = `SELECT 1;`
