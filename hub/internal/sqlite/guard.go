package sqlite

// migGuard adds deployments' guard rules: hub.GuardRules as JSON, or ”
// for none.
const migGuard = `ALTER TABLE deployments ADD COLUMN guard TEXT NOT NULL DEFAULT '';`
