package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/agent/internal/fsutil"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/proto/agent/v1/topics"
)

// EnrollPath is the hub's enrollment route, relative to the hub URL.
const EnrollPath = "/api/v1/agents/enroll"

// CredentialsFile is the name of the credential file in the data directory.
const CredentialsFile = "credentials.json"

// Credentials are what enrollment gives an agent: its id, its broker
// secret and where the broker is. They are persisted as DataDir/credentials.json
// (mode 0600) and are all the agent needs to start again.
type Credentials struct {
	AgentID string `json:"agent_id"`
	Secret  string `json:"secret"`
	MQTTURL string `json:"mqtt_url"`
	// Hub is the hub URL the agent enrolled with.
	Hub string `json:"hub"`
	// EnrolledAt is when enrollment succeeded (informational).
	EnrolledAt time.Time `json:"enrolled_at"`
}

// Validate checks that every field the agent needs is present and well formed.
func (c *Credentials) Validate() error {
	switch {
	case !topics.ValidAgentID(c.AgentID):
		return fmt.Errorf("%w: agent_id %q does not match [a-z0-9][a-z0-9-]{0,62}", ErrInvalidCredentials, c.AgentID)
	case c.Secret == "":
		return fmt.Errorf("%w: secret is empty", ErrInvalidCredentials)
	case c.MQTTURL == "":
		return fmt.Errorf("%w: mqtt_url is empty", ErrInvalidCredentials)
	}
	u, err := url.Parse(c.MQTTURL)
	if err != nil || u.Host == "" || (u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtt" && u.Scheme != "mqtts" && u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("%w: mqtt_url %q: want tcp://HOST:PORT (or ssl, tls, mqtt, mqtts, ws, wss)", ErrInvalidCredentials, c.MQTTURL)
	}
	return nil
}

// LoadCredentials reads dir/credentials.json. It returns (nil, nil) when
// the file does not exist (the agent is not enrolled yet), and an error
// wrapping ErrInvalidCredentials when it exists but is unusable.
func LoadCredentials(dir string) (*Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var c Credentials
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCredentials, path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// SaveCredentials validates c and writes it to dir/credentials.json with
// mode 0600: temp file, fsync, rename, fsync dir, so a crash leaves the old
// file or the new one. It creates dir (0700) if needed.
func SaveCredentials(dir string, c *Credentials) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := fsutil.WriteFile(filepath.Join(dir, CredentialsFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// EnrollRequest is the body of POST {hub}/api/v1/agents/enroll.
type EnrollRequest struct {
	Token        string             `json:"token"`
	Name         string             `json:"name"`
	Labels       map[string]string  `json:"labels,omitempty"`
	Capabilities EnrollCapabilities `json:"capabilities"`
}

// EnrollCapabilities is the JSON form of agentv1.Capabilities in an
// enrollment request.
type EnrollCapabilities struct {
	Kind               string `json:"kind"`
	OS                 string `json:"os"`
	Arch               string `json:"arch"`
	CPUs               uint32 `json:"cpus"`
	MemoryBytes        uint64 `json:"memory_bytes"`
	ONNXRuntimeVersion string `json:"onnxruntime_version,omitempty"`
	AgentVersion       string `json:"agent_version,omitempty"`
	// FPGA is an FPGA agent's card; omitted for other kinds.
	FPGA *EnrollFPGADevice `json:"fpga,omitempty"`
}

// EnrollFPGADevice is the JSON form of agentv1.FPGADevice.
type EnrollFPGADevice struct {
	Name        string `json:"name"`
	ArrayRows   uint32 `json:"array_rows"`
	ArrayCols   uint32 `json:"array_cols"`
	ClockMHz    uint32 `json:"clock_mhz"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Firmware    string `json:"firmware"`
}

// CapabilitiesJSON converts c to its enrollment form, the card included
// when c has one.
func CapabilitiesJSON(c *agentv1.Capabilities) EnrollCapabilities {
	e := EnrollCapabilities{Kind: c.GetKind(), OS: c.GetOs(), Arch: c.GetArch(), CPUs: c.GetCpus(),
		MemoryBytes: c.GetMemoryBytes(), ONNXRuntimeVersion: c.GetOnnxruntimeVersion(), AgentVersion: c.GetAgentVersion()}
	if f := c.GetFpga(); f != nil {
		e.FPGA = &EnrollFPGADevice{Name: f.GetName(), ArrayRows: f.GetArrayRows(), ArrayCols: f.GetArrayCols(),
			ClockMHz: f.GetClockMhz(), MemoryBytes: f.GetMemoryBytes(), Firmware: f.GetFirmware()}
	}
	return e
}

type enrollResponse struct {
	AgentID string `json:"agent_id"`
	Secret  string `json:"secret"`
	MQTTURL string `json:"mqtt_url"`
}

type hubError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// maxEnrollResponse bounds how much of the hub's answer is read.
const maxEnrollResponse = 64 << 10

// Enroll trades a one-time join token for credentials: one POST to
// hub+EnrollPath, no retries (a token is single-use, so the caller decides).
// Errors wrap ErrHubUnreachable (no HTTP answer), ErrEnrollRefused (a 4xx:
// the hub's message and code are in the text) or ErrEnrollFailed (any other
// answer, including a malformed 201). client nil means a client with a 30s
// timeout. It does not save the credentials (see SaveCredentials).
func Enroll(ctx context.Context, client *http.Client, hub string, req EnrollRequest, log *slog.Logger) (*Credentials, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	base, err := ParseHubURL(hub)
	if err != nil {
		return nil, err
	}
	if req.Token == "" {
		return nil, fmt.Errorf("enroll: %w: empty join token", ErrInvalidConfig)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	endpoint := base + EnrollPath
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("enroll at %s: %w", endpoint, ctx.Err())
		}
		return nil, fmt.Errorf("enroll at %s: %w: %w", endpoint, ErrHubUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxEnrollResponse))
	if err != nil {
		return nil, fmt.Errorf("enroll at %s: %w: reading the answer: %w", endpoint, ErrHubUnreachable, err)
	}
	c, err := parseEnrollAnswer(resp.StatusCode, b, base)
	if err != nil {
		return nil, fmt.Errorf("enroll at %s: %w", endpoint, err)
	}
	log.Info("enrolled", "agent_id", c.AgentID, "mqtt_url", c.MQTTURL, "hub", base)
	return c, nil
}

// parseEnrollAnswer turns the hub's answer to an enrollment into
// Credentials for hub base, or an error wrapping ErrEnrollRefused (4xx) or
// ErrEnrollFailed.
func parseEnrollAnswer(status int, b []byte, base string) (*Credentials, error) {
	if status != http.StatusCreated {
		var he hubError
		msg := strings.ToValidUTF8(strings.TrimSpace(string(b)), "?")
		if json.Unmarshal(b, &he) == nil && he.Error != "" {
			msg = he.Error
			if he.Code != "" {
				msg += " (code " + he.Code + ")"
			}
		}
		if len(msg) > 512 {
			msg = strings.ToValidUTF8(msg[:512], "") + "…"
		}
		kind := ErrEnrollFailed
		if status >= 400 && status < 500 {
			kind = ErrEnrollRefused
		}
		return nil, fmt.Errorf("%w: HTTP %d: %s", kind, status, msg)
	}
	var er enrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		return nil, fmt.Errorf("%w: HTTP 201 with a body that is not the expected JSON: %w", ErrEnrollFailed, err)
	}
	c := &Credentials{AgentID: er.AgentID, Secret: er.Secret, MQTTURL: er.MQTTURL, Hub: base, EnrolledAt: time.Now().UTC()}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: the hub's answer: %w", ErrEnrollFailed, err)
	}
	return c, nil
}

// ParseHubURL checks that hub is an http(s) URL with a host and returns it
// without a trailing slash.
func ParseHubURL(hub string) (string, error) {
	u, err := url.Parse(hub)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: hub URL %q: want http://HOST:PORT or https://HOST:PORT", ErrInvalidConfig, hub)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
