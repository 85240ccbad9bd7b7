package hub

// GuardRules are a deployment's rollback rules (see agentv1.GuardRules):
// after switching to a new version, each agent evaluates RollbackIf on its
// own telemetry for Probation and switches back by itself if it holds.
type GuardRules struct {
	RollbackIf string `json:"rollback_if"`
	// Probation is a Go duration ("10m").
	Probation string `json:"probation"`
}
