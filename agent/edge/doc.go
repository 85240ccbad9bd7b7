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
// It does not own the registry (the caller creates and closes it), the HTTP
// listener, downloads or the agent's bookkeeping.
package edge
