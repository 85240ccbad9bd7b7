package hub

// DriftStore keeps input drift baselines and windows.
type DriftStore interface{}
