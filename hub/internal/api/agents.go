package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/atelier-ml/atelier/hub"
)

// AgentRevoker ends a revoked agent's sessions at once (disconnects it
// from the broker and forgets its desired state). The server implements
// it; RevokeAgent is called after the store has recorded the revocation,
// so the broker already refuses the agent's reconnects.
type AgentRevoker interface {
	RevokeAgent(ctx context.Context, id string) error
}

const codeUnauthorized = "unauthorized"

// agentRoutes are the agent routes. Agents are hub-wide, not per
// workspace.
func (a *API) agentRoutes() []Route {
	const agents = "/api/v1/agents"
	return []Route{
		{Method: "POST", Pattern: agents + "/tokens", Summary: "Create a one-time join token (ttl default 1h, at most 7 days)", Request: "JoinTokenCreate", Response: "JoinToken", Status: 201, handler: a.createJoinToken},
		{Method: "POST", Pattern: agents + "/enroll", Summary: "Enroll an agent with a join token (401 if the token is unknown, used or expired)", Request: "EnrollRequest", Response: "Enrollment", Status: 201, handler: a.enrollAgent},
		{Method: "GET", Pattern: agents, Summary: "List agents (hub-wide)", Response: "[]Agent", Status: 200, handler: a.listAgents},
		{Method: "GET", Pattern: agents + "/{id}", Summary: "Show an agent", Response: "Agent", Status: 200, handler: a.getAgent},
		{Method: "POST", Pattern: agents + "/{id}/revoke", Summary: "Revoke an agent: its credential is refused and its connections closed at once", Response: "Agent", Status: 200, handler: a.revokeAgent},
	}
}

// agentSchemas adds the agent JSON types to the OpenAPI schemas.
func agentSchemas(s obj) obj {
	timeT := obj{"type": "string", "format": "date-time"}
	strMap := mapOf(obj{"type": "string"})
	s["Capabilities"] = props(obj{"kind": str("edge, container or fpga"), "os": str(""), "arch": str(""),
		"cpus": obj{"type": "integer"}, "memory_bytes": obj{"type": "integer", "format": "int64"},
		"onnxruntime_version": str(""), "agent_version": str(""),
		"fpga": schemaOfType(reflect.TypeFor[hub.FPGADevice]())}, "kind")
	s["Agent"] = props(obj{"id": str("matches [a-z0-9][a-z0-9-]{0,62}; the broker user and MQTT client id"), "name": str(""), "kind": str(""),
		"labels": strMap, "state": obj{"type": "string", "enum": []string{"online", "offline", "revoked"}},
		"last_seen": obj{"type": "string", "format": "date-time", "nullable": true}, "capabilities": ref("Capabilities"),
		"enrolled_at": timeT, "revoked_at": timeT, "endpoint": str("scoring endpoint from the last report"),
		"observed_generation": obj{"type": "integer", "format": "int64"}})
	s["JoinTokenCreate"] = props(obj{"labels": strMap, "ttl": str("Go duration, default 1h, at most 168h")})
	s["JoinToken"] = props(obj{"token": str("shown once; the hub keeps its sha256"), "expires_at": timeT, "labels": strMap})
	s["EnrollRequest"] = props(obj{"token": str(""), "name": str(""), "labels": mapOf(obj{"type": "string", "description": "overrides the token's label of the same key"}),
		"capabilities": ref("Capabilities")}, "token", "name", "capabilities")
	s["Enrollment"] = props(obj{"agent_id": str(""), "secret": str("broker password; shown once"), "mqtt_url": str("tcp://HOST:PORT")})
	return s
}

// failAgent is fail with ErrUnauthorized answered 401.
func (a *API) failAgent(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, hub.ErrUnauthorized) {
		a.log.Info("agent enrollment refused", "remote", r.RemoteAddr, "err", err)
		writeJSON(w, http.StatusUnauthorized, hub.ErrorBody{Error: err.Error(), Code: codeUnauthorized})
		return
	}
	a.fail(w, r, err)
}

func (a *API) createJoinToken(w http.ResponseWriter, r *http.Request) {
	var body hub.JoinTokenCreate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	ttl, err := hub.ParseJoinTokenTTL(body.TTL)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	tok, err := a.store.CreateJoinToken(r.Context(), body.Labels, ttl)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("join token created", "expires_at", tok.ExpiresAt, "labels", tok.Labels)
	writeJSON(w, http.StatusCreated, tok)
}

func (a *API) enrollAgent(w http.ResponseWriter, r *http.Request) {
	var body hub.EnrollRequest
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	if a.cfg.AgentMQTTURL == "" {
		a.fail(w, r, fmt.Errorf("enroll: this hub has no MQTT broker address to give agents"))
		return
	}
	ag, secret, err := a.store.Enroll(r.Context(), body)
	if err != nil {
		a.failAgent(w, r, err)
		return
	}
	a.log.Info("agent enrolled", "agent", ag.ID, "name", ag.Name, "kind", ag.Kind, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, hub.Enrollment{AgentID: ag.ID, Secret: secret, MQTTURL: a.cfg.AgentMQTTURL})
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListAgents(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getAgent(w http.ResponseWriter, r *http.Request) {
	ag, err := a.store.GetAgent(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ag)
}

// revokeAgent records the revocation (durably, first), then has the
// AgentRevoker close the agent's sessions. If that fails the agent stays
// revoked in the store (its reconnects are refused) and the call answers
// 500 so the caller can retry; retrying is harmless.
func (a *API) revokeAgent(w http.ResponseWriter, r *http.Request) {
	ag, err := a.store.RevokeAgent(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.cfg.AgentRevoker != nil {
		if err := a.cfg.AgentRevoker.RevokeAgent(r.Context(), ag.ID); err != nil {
			a.fail(w, r, fmt.Errorf("agent %s is revoked but its sessions could not be closed: %w", ag.ID, err))
			return
		}
	}
	a.log.Info("agent revoked", "agent", ag.ID, "name", ag.Name)
	writeJSON(w, http.StatusOK, ag)
}
