package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

func TestAgentsAgainstHub(t *testing.T) {
	c := startHub(t)
	ctx := context.Background()
	tok, err := c.CreateJoinToken(ctx, map[string]string{"site": "lab"}, "10m")
	if err != nil {
		t.Fatal(err)
	}
	en, err := c.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: "edge-1", Capabilities: hub.Capabilities{Kind: "edge"}})
	if err != nil || en.Secret == "" || !strings.HasPrefix(en.MQTTURL, "tcp://") {
		t.Fatalf("enroll: %+v, %v", en, err)
	}
	_, err = c.Enroll(ctx, hub.EnrollRequest{Token: tok.Token, Name: "edge-2", Capabilities: hub.Capabilities{Kind: "edge"}})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != "unauthorized" || !strings.Contains(ae.Message, "already used") {
		t.Errorf("reused token: %v", err)
	}
	if _, err := c.CreateJoinToken(ctx, nil, "8d"); !errors.Is(err, hub.ErrInvalid) {
		t.Errorf("bad ttl: %v", err)
	}
	list, err := c.ListAgents(ctx)
	if err != nil || len(list) != 1 || list[0].ID != en.AgentID || list[0].Labels["site"] != "lab" {
		t.Fatalf("list: %+v, %v", list, err)
	}
	a, err := c.RevokeAgent(ctx, en.AgentID)
	if err != nil || a.State != hub.AgentRevoked {
		t.Fatalf("revoke: %+v, %v", a, err)
	}
	if a, err := c.GetAgent(ctx, en.AgentID); err != nil || a.State != hub.AgentRevoked {
		t.Errorf("get: %+v, %v", a, err)
	}
	if _, err := c.GetAgent(ctx, "nobody"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}
