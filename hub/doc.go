// Package hub holds the domain of the Atelier hub: the types of the
// registry (workspaces, experiments, runs, metrics, logs, artifacts), the
// errors every layer shares, and the interfaces the hub consumes (Store,
// Blobs). These types are also the JSON wire types of the REST API, so the
// server (hub/server), the Go SDK (hub/client) and the CLI agree on one
// definition.
//
// The REST API, all JSON unless noted; every error is
// {"error": "...", "code": "..."} with the status given by the error class
// (ErrInvalid 400, ErrNotFound 404, ErrConflict 409, ErrTooLarge 413):
//
//	GET    /healthz
//	GET    /openapi.json
//	POST   /api/v1/workspaces                                 {name, description}      -> 201 Workspace
//	GET    /api/v1/workspaces                                                          -> []Workspace
//	GET    /api/v1/workspaces/{ws}                                                     -> Workspace
//	DELETE /api/v1/workspaces/{ws}[?force=true]                                        -> 204 (409 if not empty)
//	POST   /api/v1/workspaces/{ws}/experiments                {name}                   -> 201 Experiment
//	GET    /api/v1/workspaces/{ws}/experiments                                         -> []Experiment
//	GET    /api/v1/workspaces/{ws}/experiments/{exp}                                   -> Experiment
//	POST   /api/v1/workspaces/{ws}/runs                       RunCreate                -> 201 Run
//	GET    /api/v1/workspaces/{ws}/runs[?experiment=E&filter=EXPR&order_by=metrics.X[:desc]&top=N] -> []Run
//	GET    /api/v1/workspaces/{ws}/runs/{run}                                          -> Run
//	PATCH  /api/v1/workspaces/{ws}/runs/{run}                 RunUpdate                -> Run
//	POST   /api/v1/workspaces/{ws}/runs/{run}/params          {"params": {k: v}}       -> Run (409 on a changed value)
//	POST   /api/v1/workspaces/{ws}/runs/{run}/tags            {"tags": {k: v}}         -> Run
//	DELETE /api/v1/workspaces/{ws}/runs/{run}/tags/{key}                               -> Run
//	POST   /api/v1/workspaces/{ws}/runs/{run}/metrics         {"metrics": [MetricPoint]} -> {"accepted": N}
//	GET    /api/v1/workspaces/{ws}/runs/{run}/metrics[?name=X]                         -> []MetricPoint
//	POST   /api/v1/workspaces/{ws}/runs/{run}/logs            {"lines": [LogLine]}     -> {"accepted": N}
//	GET    /api/v1/workspaces/{ws}/runs/{run}/logs[?after=SEQ&follow=true]             -> NDJSON of LogLine
//	PUT    /api/v1/workspaces/{ws}/runs/{run}/artifacts/{path...}   raw bytes          -> Artifact
//	GET    /api/v1/workspaces/{ws}/runs/{run}/artifacts                                -> []Artifact
//	GET    /api/v1/workspaces/{ws}/runs/{run}/artifacts/{path...}                      -> raw bytes
//	PUT    /api/v1/workspaces/{ws}/runs/{run}/snapshot        tar.gz bytes             -> Blob
//	GET    /api/v1/workspaces/{ws}/runs/{run}/snapshot                                 -> tar.gz bytes
//	POST   /api/v1/workspaces/{ws}/models/{name}/versions[?description=&tag=K=V&run=&path=]  raw ONNX bytes -> 201 ModelVersion
//	GET    /api/v1/workspaces/{ws}/models                                              -> []Model
//	GET    /api/v1/workspaces/{ws}/models/{name}/versions                              -> []ModelVersion (newest first)
//	GET    /api/v1/workspaces/{ws}/models/{name}/versions/{version}                    -> ModelVersion
//	GET    /api/v1/workspaces/{ws}/models/{name}/versions/{version}/content            -> ONNX bytes
//	POST   /api/v1/workspaces/{ws}/models/{name}/versions/{version}/tags {"tags": {k: v}} -> ModelVersion
//	DELETE /api/v1/workspaces/{ws}/models/{name}/versions/{n}[?force=true]             -> 204 (409 if deployed or aliased)
//	PUT    /api/v1/workspaces/{ws}/models/{name}/aliases/{alias}  {"version": N}       -> ModelVersion
//	DELETE /api/v1/workspaces/{ws}/models/{name}/aliases/{alias}                       -> 204
//	POST   /api/v1/agents/tokens                              {labels, ttl}            -> 201 JoinToken
//	POST   /api/v1/agents/enroll                              EnrollRequest            -> 201 Enrollment (401 bad token)
//	GET    /api/v1/agents                                                              -> []Agent
//	GET    /api/v1/agents/{id}                                                         -> Agent
//	POST   /api/v1/agents/{id}/revoke                                                  -> Agent
//	POST   /api/v1/workspaces/{ws}/deployments                DeploymentCreate         -> 201 Deployment
//	GET    /api/v1/workspaces/{ws}/deployments                                         -> []Deployment
//	GET    /api/v1/workspaces/{ws}/deployments/{name}                                  -> Deployment (with targets)
//	PATCH  /api/v1/workspaces/{ws}/deployments/{name}         DeploymentUpdate         -> Deployment
//	DELETE /api/v1/workspaces/{ws}/deployments/{name}                                  -> 204
//
// A deployment puts one model version on agents chosen by id or by a label
// selector (all labels must match; agents enrolling later are reached too).
// Its model is NAME:VERSION, NAME@ALIAS or NAME (latest), resolved once at
// create or update time (an alias is recorded beside the version, and the
// deployment does not follow the alias when it moves). Deployment names
// are unique across the hub, not only per workspace: an agent serves every
// deployment on one endpoint at /v2/models/{name}. Each target's state
// (pending, downloading, loading, serving, failed) comes from its agent's
// latest report. A deployed model version cannot be deleted.
//
// Agents are hub-wide, not per workspace (deployments made in a workspace
// target them by id or label). A join token is one-time and expires (ttl
// default 1h, at most 7 days); the hub keeps only the sha256 of tokens and
// agent secrets. Enrollment consumes the token and returns the agent's id,
// its broker secret and the broker's MQTT URL; the agent's labels are the
// token's overlaid with the request's (the request wins on a shared key).
//
// A model version is registered with the ONNX file as the raw body, or with
// an empty body and run=RUN&path=ARTIFACT naming a run artifact (the
// version then shares the artifact's blob and keeps the run as lineage). The
// hub decodes the file before storing anything; a file that is not a valid
// ONNX model or uses external data is a 400. {version} is a number,
// "latest", an alias or "@alias"; deletes take only a number.
//
// A log stream with follow=true stays open, sending lines as they are
// appended, until the run reaches a final status or the client goes away.
package hub
