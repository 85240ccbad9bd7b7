package sqlite

// migGuard adds deployments' guard rules (placeholder until written).
const migGuard = `SELECT 1;`
