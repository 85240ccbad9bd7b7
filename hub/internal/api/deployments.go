package api

import (
	"net/http"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/rollout"
)

// Rollout is what the deployment routes need of the hub's rollout
// (hub/internal/rollout): to be told that deployments changed, and each
// targeted agent's state. Without one (Config.Rollout nil) deployments are
// still stored, and every target reads pending.
type Rollout interface {
	// Notify asks for the agents' desired states to be recomputed and
	// pushed; it does not block.
	Notify()
	// Targets returns the state of d on every agent of agents it reaches.
	Targets(d hub.Deployment, agents []hub.Agent) []hub.DeploymentTarget
}

// deploymentRoutes are the deployment routes under one workspace.
func (a *API) deploymentRoutes(one string) []Route {
	const dep = "/deployments/{name}"
	return []Route{
		{Method: "POST", Pattern: one + "/deployments", Summary: "Create a deployment (model NAME:VERSION, NAME@ALIAS or NAME resolved to a version; agents by id or a label selector). Names are unique hub-wide",
			Request: "DeploymentCreate", Response: "Deployment", Status: 201, handler: a.createDeployment},
		{Method: "GET", Pattern: one + "/deployments", Summary: "List deployments with each target agent's state", Response: "[]Deployment", Status: 200, handler: a.listDeployments},
		{Method: "GET", Pattern: one + dep, Summary: "Show a deployment with each target agent's state", Response: "Deployment", Status: 200, handler: a.getDeployment},
		{Method: "PATCH", Pattern: one + dep, Summary: "Change a deployment's model (resolved again), targets or options", Request: "DeploymentUpdate", Response: "Deployment", Status: 200, handler: a.updateDeployment},
		{Method: "DELETE", Pattern: one + dep, Summary: "Delete a deployment (its agents stop serving it)", Status: 204, handler: a.deleteDeployment},
	}
}

// deploymentSchemas adds the deployment JSON types to the OpenAPI schemas.
func deploymentSchemas(s obj) obj {
	timeT := obj{"type": "string", "format": "date-time"}
	strMap := mapOf(obj{"type": "string"})
	s["RuntimeOptions"] = props(obj{"max_batch": obj{"type": "integer", "description": "most requests merged into one run (0: the agent's default)"},
		"max_delay":          str("Go duration a request may wait to be batched, at most 10s (empty: the agent's default)"),
		"allow_cpu_fallback": obj{"type": "boolean", "description": "FPGA agents score on the CPU while their card is down"}})
	s["DeploymentTarget"] = props(obj{"agent": str("agent id"), "state": obj{"type": "string", "enum": []string{hub.TargetPending, hub.TargetDownloading, hub.TargetLoading, hub.TargetServing, hub.TargetFailed}},
		"model_version": obj{"type": "integer"}, "error": str(""), "endpoint": str("the agent's endpoint + /v2/models/{name}")})
	s["Deployment"] = props(obj{"workspace": str(""), "name": str("unique hub-wide; the model name agents serve it under"),
		"model": str(""), "version": obj{"type": "integer"}, "alias": str("the alias the version was resolved from"),
		"sha256": str(""), "size": obj{"type": "integer", "format": "int64"},
		"agents": arrayOf(obj{"type": "string"}), "selector": strMap, "options": ref("RuntimeOptions"),
		"created_at": timeT, "updated_at": timeT, "targets": arrayOf(ref("DeploymentTarget"))})
	s["DeploymentCreate"] = props(obj{"name": str(""), "model": str("NAME:VERSION, NAME@ALIAS or NAME (latest)"),
		"agents": arrayOf(obj{"type": "string"}), "selector": strMap, "options": ref("RuntimeOptions")}, "name", "model")
	s["DeploymentUpdate"] = props(obj{"model": str("NAME:VERSION, NAME@ALIAS or NAME (latest)"),
		"agents": arrayOf(obj{"type": "string"}), "selector": strMap, "options": ref("RuntimeOptions")})
	// Guard rules (hub/guard.go); the rule is validated by body.Spec/Apply.
	s["GuardRules"] = props(obj{"rollback_if": str(`rule the agents evaluate during probation, e.g. "error_rate > 0.05 or latency_p99 > 50ms" (docs/deployments.md)`),
		"probation":    str("Go duration, whole seconds from 1s to 168h (empty: 10m)"),
		"min_requests": obj{"type": "integer", "description": "requests before the rule is evaluated (0: the agent's default, 20)"}})
	for _, k := range []string{"Deployment", "DeploymentCreate", "DeploymentUpdate"} {
		s[k].(obj)["properties"].(obj)["guard"] = ref("GuardRules")
	}
	s["Deployment"].(obj)["properties"].(obj)["drifting"] = obj{"type": "boolean", "description": "inputs drift from the baseline beyond the threshold (docs/drift.md)"}
	t := s["DeploymentTarget"].(obj)["properties"].(obj)
	t["state"].(obj)["enum"] = append(t["state"].(obj)["enum"].([]string), hub.TargetRolledBack)
	t["rolled_back_version"] = obj{"type": "integer", "description": "with state rolled_back: the version the agent rolled back"}
	return s
}

// withTargets fills in the Targets of each deployment.
func (a *API) withTargets(r *http.Request, deps []hub.Deployment) error {
	if len(deps) == 0 {
		return nil
	}
	agents, err := a.store.ListAgents(r.Context())
	if err != nil {
		return err
	}
	for i := range deps {
		if a.cfg.Rollout != nil {
			deps[i].Targets = a.cfg.Rollout.Targets(deps[i], agents)
		} else {
			deps[i].Targets = rollout.Targets(deps[i], agents, nil)
		}
	}
	return a.withDrifting(r, deps) // drift.go
}

func (a *API) notifyRollout() {
	if a.cfg.Rollout != nil {
		a.cfg.Rollout.Notify()
	}
}

func (a *API) writeDeployment(w http.ResponseWriter, r *http.Request, status int, d hub.Deployment) {
	list := []hub.Deployment{d}
	if err := a.withTargets(r, list); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, list[0])
}

func (a *API) createDeployment(w http.ResponseWriter, r *http.Request) {
	var body hub.DeploymentCreate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	spec, err := body.Spec()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d, err := a.store.CreateDeployment(r.Context(), r.PathValue("ws"), spec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.notifyRollout()
	a.writeDeployment(w, r, http.StatusCreated, d)
}

func (a *API) listDeployments(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListDeployments(r.Context(), r.PathValue("ws"))
	if err == nil {
		err = a.withTargets(r, list)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request) {
	d, err := a.store.GetDeployment(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeDeployment(w, r, http.StatusOK, d)
}

func (a *API) updateDeployment(w http.ResponseWriter, r *http.Request) {
	var body hub.DeploymentUpdate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, ws := r.Context(), r.PathValue("ws")
	d, err := a.store.GetDeployment(ctx, ws, r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	spec, err := body.Apply(d)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if d, err = a.store.UpdateDeployment(ctx, ws, spec); err != nil {
		a.fail(w, r, err)
		return
	}
	a.notifyRollout()
	a.writeDeployment(w, r, http.StatusOK, d)
}

func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteDeployment(r.Context(), r.PathValue("ws"), r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	a.notifyRollout()
	w.WriteHeader(http.StatusNoContent)
}
