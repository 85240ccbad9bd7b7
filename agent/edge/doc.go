// Package edge is the edge agent's serving side: an agent.Server that loads
// the model files the agent hands it into an in-process scoring.Registry
// with ONNX Runtime (scoring/ort). The registry's HTTP server (package
// scoring) then serves each deployment as the model named after it:
// /v2/models/{deployment}[/versions/{version}]/... and /score/{deployment}.
//
// Load opens the file with ONNX Runtime, and either loads it (a new
// deployment) or hot-swaps it in (a deployment already served): the
// registry warms the new version up with one inference before it takes
// traffic, and on any error the version served before keeps serving.
//
// Run is the whole edge agent (what `atelier-agent run` starts): a
// registry, its HTTP server on a listener, and the agent core (package
// agent) driving a Server over that registry, stopped together.
//
// Server does not own the registry (the caller creates and closes it; Run
// does both), and nothing here downloads models or keeps the agent's
// bookkeeping (package agent does). Enrollment is package agent's too.
package edge
