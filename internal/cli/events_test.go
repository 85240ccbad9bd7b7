package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/cli"
	"github.com/atelier-ml/atelier/testbench"
	"github.com/atelier-ml/atelier/testbench/fleetsim"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventsCommand runs `atelier events` against a real hub whose log
// holds the online and offline events of a simulated agent.
func TestEventsCommand(t *testing.T) {
	h := testbench.StartHub(t, testbench.HubConfig(t))
	env := func(k string) string {
		if k == "ATELIER_HUB" {
			return h.URL
		}
		return ""
	}
	run := func(ctx context.Context, stdout *syncBuffer, args ...string) (int, string) {
		var stderr bytes.Buffer
		code := cli.Main(ctx, args, stdout, &stderr, env, nil)
		return code, stderr.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Follow from before the agent exists.
	var followed syncBuffer
	fctx, stopFollow := context.WithCancel(ctx)
	followDone := make(chan string, 1)
	go func() {
		code, stderr := run(fctx, &followed, "events", "--follow", "--kind", "agent_online,agent_offline", "-o", "json")
		followDone <- fmt.Sprintf("exit %d: %s", code, stderr)
	}()

	fl, err := fleetsim.Start(ctx, fleetsim.Config{Hub: h.URL, Agents: 1, DataDir: t.TempDir(), Name: "cli", Heartbeat: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	id := fl.IDs()[0]
	// waitLines waits for n lines of followed NDJSON.
	waitLines := func(n int) {
		t.Helper()
		for strings.Count(followed.String(), "\n") < n {
			select {
			case res := <-followDone:
				t.Fatalf("follow ended (%s) with output %q", res, followed.String())
			case <-ctx.Done():
				t.Fatalf("followed output: %q, want %d lines", followed.String(), n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitLines(1) // connected
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	waitLines(2)
	stopFollow()
	<-followDone
	var kinds []string
	for line := range strings.SplitSeq(strings.TrimSpace(followed.String()), "\n") {
		var e hub.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("followed line %q: %v", line, err)
		}
		if e.Agent != id {
			t.Errorf("followed event of %q, want %q", e.Agent, id)
		}
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, ",") != "agent_online,agent_offline" {
		t.Errorf("followed kinds %v", kinds)
	}

	var out syncBuffer
	if code, stderr := run(ctx, &out, "events", "--agent", id); code != 0 {
		t.Fatalf("events: exit %d: %s", code, stderr)
	}
	table := regexp.MustCompile(`(?m)^ID +TIME +KIND +AGENT +DEPLOYMENT +MESSAGE\n1 +\S+ \S+ +agent_online +` + id + ` +- +agent connected\n2 +\S+ \S+ +agent_offline +` + id + ` +- +agent disconnected\n$`)
	if !table.MatchString(out.String()) {
		t.Errorf("table:\n%s", out.String())
	}
	out = syncBuffer{}
	if code, stderr := run(ctx, &out, "events", "--kind", "agent_offline", "--since", "1h", "-o", "json"); code != 0 {
		t.Fatalf("events -o json: exit %d: %s", code, stderr)
	}
	var evs []hub.Event
	if err := json.Unmarshal([]byte(out.String()), &evs); err != nil || len(evs) != 1 || evs[0].Kind != hub.EventAgentOffline {
		t.Errorf("json list %q: %v", out.String(), err)
	}
	out = syncBuffer{}
	if code, _ := run(ctx, &out, "events", "--deployment", "none", "-o", "json"); code != 0 || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("empty list = %q", out.String())
	}
	for _, tc := range []struct{ args, want string }{
		{"events --kind exploded", `--kind "exploded": must be one of agent_online`},
		{"events --since yesterday", `--since "yesterday": want a duration`},
		{"events extra", "no arguments"},
	} {
		out = syncBuffer{}
		code, stderr := run(ctx, &out, strings.Fields(tc.args)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error with %q", tc.args, code, stderr, tc.want)
		}
	}
}
