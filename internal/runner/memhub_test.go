package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/atelier-ml/atelier/hub"
)

// errDown is what memHub returns while it plays an unreachable hub.
var errDown = errors.New("dial tcp 127.0.0.1:1: connection refused")

// memHub is an in-memory stand-in for the hub used by unit tests that need
// to inject failures; the integration test uses the real server and
// client. It keeps one run.
type memHub struct {
	mu        sync.Mutex
	run       hub.Run
	created   bool
	statuses  []hub.RunStatus
	updates   []hub.RunUpdate
	logs      []hub.LogLine
	points    []hub.MetricPoint
	snapshot  []byte
	artifacts map[string][]byte

	// failLogs makes that many AppendLogs calls fail as unreachable;
	// failAll makes every log and metric call fail.
	failLogs atomic.Int64
	failAll  atomic.Bool
	calls    atomic.Int64
	// onSnapshot, if set, runs inside PutSnapshot and its error is returned.
	onSnapshot func(ctx context.Context) error
}

func newMemHub() *memHub { return &memHub{artifacts: map[string][]byte{}} }

func (m *memHub) CreateRun(_ context.Context, ws string, rc hub.RunCreate) (*hub.Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.created = true
	m.run = hub.Run{ID: "r1", Workspace: ws, Experiment: rc.Experiment, Name: rc.Name, Status: rc.Status,
		Command: rc.Command, Params: map[string]string{}, Tags: map[string]string{}}
	for k, v := range rc.Params {
		m.run.Params[k] = v
	}
	for k, v := range rc.Tags {
		m.run.Tags[k] = v
	}
	m.statuses = append(m.statuses, rc.Status)
	r := m.run
	return &r, nil
}

func (m *memHub) UpdateRun(_ context.Context, ws, id string, u hub.RunUpdate) (*hub.Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run.Status.Final() {
		return nil, fmt.Errorf("run %s is %s: %w", id, m.run.Status, hub.ErrConflict)
	}
	m.run.Status, m.run.ExitCode, m.run.Error = u.Status, u.ExitCode, u.Error
	m.statuses = append(m.statuses, u.Status)
	m.updates = append(m.updates, u)
	r := m.run
	return &r, nil
}

func (m *memHub) SetParams(_ context.Context, ws, id string, params map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range params {
		if old, ok := m.run.Params[k]; ok && old != v {
			return &hub.ParamConflictError{Key: k, Old: old, New: v}
		}
	}
	for k, v := range params {
		m.run.Params[k] = v
	}
	return nil
}

func (m *memHub) SetTags(_ context.Context, ws, id string, tags map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range tags {
		m.run.Tags[k] = v
	}
	return nil
}

func (m *memHub) LogMetrics(_ context.Context, ws, id string, pts []hub.MetricPoint) error {
	m.calls.Add(1)
	if m.failAll.Load() {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.points = append(m.points, pts...)
	return nil
}

func (m *memHub) AppendLogs(_ context.Context, ws, id string, lines []hub.LogLine) error {
	m.calls.Add(1)
	if m.failAll.Load() || m.failLogs.Add(-1) >= 0 {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logs = append(m.logs, lines...)
	return nil
}

func (m *memHub) PutArtifact(_ context.Context, ws, id, path string, r io.Reader, size int64) (*hub.Artifact, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("artifact %s: got %d bytes, announced %d: %w", path, len(b), size, hub.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.artifacts[path] = b
	return &hub.Artifact{Path: path, Size: size}, nil
}

func (m *memHub) PutSnapshot(ctx context.Context, ws, id string, r io.Reader, size int64) (*hub.Blob, error) {
	if m.onSnapshot != nil {
		if err := m.onSnapshot(ctx); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snapshot = buf.Bytes()
	return &hub.Blob{Size: size}, nil
}

// lines returns the text of the recorded log lines of one stream.
func (m *memHub) lines(stream string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, l := range m.logs {
		if l.Stream == stream {
			out = append(out, l.Text)
		}
	}
	return out
}

var _ Hub = (*memHub)(nil)
