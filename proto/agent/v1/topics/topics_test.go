package topics

import "testing"

func TestTopicSubjectParse(t *testing.T) {
	if got := Topic("edge-1", Desired); got != "atelier/v1/agents/edge-1/desired" {
		t.Errorf("Topic = %q", got)
	}
	if got := Subject("edge-1", ChunksRequest); got != "atelier.v1.agents.edge-1.chunks.request" {
		t.Errorf("Subject = %q", got)
	}
	if got := All(Reported); got != "atelier/v1/agents/+/reported" {
		t.Errorf("All = %q", got)
	}
	for _, leaf := range append(AgentPublishes(), AgentSubscribes()...) {
		a, l, ok := Parse(Topic("a-1", leaf))
		if !ok || a != "a-1" || l != leaf {
			t.Errorf("Parse(Topic(a-1, %s)) = %q %q %v", leaf, a, l, ok)
		}
	}
	for _, bad := range []string{
		"", "atelier/v1/agents/", "atelier/v1/agents/a", "atelier/v1/agents/a/unknown",
		"atelier/v1/agents/A/desired", "atelier/v1/agents/-a/desired", "atelier/v2/agents/a/desired",
		"atelier/v1/agents/a/chunks/request/x", "atelier/v1/agents/+/desired",
	} {
		if a, l, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) = %q %q, want not ok", bad, a, l)
		}
	}
}

func TestValidAgentID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "edge-1": true, "0": true, "a-": true,
		"": false, "-a": false, "A": false, "a.b": false, "a/b": false, "a_b": false, "a+": false, "#": false,
		"a23456789012345678901234567890123456789012345678901234567890123":  true,
		"a234567890123456789012345678901234567890123456789012345678901234": false,
	} {
		if got := ValidAgentID(id); got != want {
			t.Errorf("ValidAgentID(%q) = %v, want %v", id, got, want)
		}
	}
}
