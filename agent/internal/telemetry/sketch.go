package telemetry

import agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"

// sketcher is a feature's distribution sketch. Until package
// internal/sketch is available it records nothing and FeatureSummary.sketch
// stays unset.
type sketcher struct{}

func (s *sketcher) add(float64)            {}
func (s *sketcher) merge(*sketcher)        {}
func (s sketcher) clone() sketcher         { return s }
func (s *sketcher) proto() *agentv1.Sketch { return nil }
