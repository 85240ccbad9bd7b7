package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the hub's configuration. Every field has a default
// (DefaultConfig); it is read-only once passed to New.
type Config struct {
	// Data is the data directory (database, blobs, broker store).
	Data string `yaml:"data"`
	// HTTP is the REST API's listen address. Port 0 picks a free port.
	HTTP string `yaml:"http"`
	// MQTT and NATS are the embedded broker's listen addresses.
	MQTT string `yaml:"mqtt"`
	NATS string `yaml:"nats"`
	// AdvertiseMQTT is the MQTT address (host:port) enrollment gives
	// agents, as they should reach the broker; empty means the bound MQTT
	// address.
	AdvertiseMQTT string `yaml:"advertise_mqtt"`
	// MaxBodyBytes limits JSON request bodies other than batches.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxBatchBytes limits metric and log batch bodies.
	MaxBatchBytes int64 `yaml:"max_batch_bytes"`
	// MaxMetricPoints limits the points of one metrics batch.
	MaxMetricPoints int `yaml:"max_metric_points"`
	// MaxArtifactBytes limits one artifact or snapshot upload.
	MaxArtifactBytes int64 `yaml:"max_artifact_bytes"`
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// WebhookURL, when set, receives every event as a JSON POST, in order,
	// at least once (docs/events.md); WebhookSecret, when set, keys the
	// X-Atelier-Signature HMAC-SHA256 header.
	WebhookURL    string `yaml:"webhook_url"`
	WebhookSecret string `yaml:"webhook_secret"`
	// EventRetention and EventMaxCount bound the event log: older events,
	// and the oldest beyond the count, are removed hourly (0: no limit).
	EventRetention time.Duration `yaml:"event_retention"`
	EventMaxCount  int64         `yaml:"event_max_count"`
	// TelemetryRawRetention is how long raw telemetry batches are kept;
	// older ones are folded into 1-minute rollups, kept for
	// TelemetryRollupRetention. TelemetryPruneInterval is how often the
	// retention runs (docs/monitoring.md).
	TelemetryRawRetention    time.Duration `yaml:"telemetry_raw_retention"`
	TelemetryRollupRetention time.Duration `yaml:"telemetry_rollup_retention"`
	TelemetryPruneInterval   time.Duration `yaml:"telemetry_prune_interval"`
	// Pprof serves Go's runtime profiles (net/http/pprof) at /debug/pprof/
	// on the HTTP API, for diagnosing the hub's CPU and memory use. Off by
	// default: the profiles show the hub's internals to anyone who can
	// reach the API.
	Pprof bool `yaml:"pprof"`
}

// DefaultDataDir is $XDG_DATA_HOME/atelier, or ~/.local/share/atelier.
func DefaultDataDir() string {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "atelier")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "atelier")
	}
	return "atelier-data"
}

// DefaultConfig returns the defaults: loopback listeners on the standard
// ports and the default data directory.
func DefaultConfig() Config {
	return Config{
		Data:              DefaultDataDir(),
		HTTP:              "127.0.0.1:8780",
		MQTT:              "127.0.0.1:1883",
		NATS:              "127.0.0.1:4222",
		MaxBodyBytes:      1 << 20,
		MaxBatchBytes:     32 << 20,
		MaxMetricPoints:   100_000,
		MaxArtifactBytes:  1 << 30,
		ShutdownTimeout:   10 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		EventRetention:    30 * 24 * time.Hour,
		EventMaxCount:     1_000_000,

		TelemetryRawRetention:    24 * time.Hour,
		TelemetryRollupRetention: 30 * 24 * time.Hour,
		TelemetryPruneInterval:   time.Hour,
	}
}

// LoadConfig decodes YAML from r onto cfg: keys present override, absent
// keys keep cfg's values. Unknown keys and values of the wrong type are
// errors naming the key and its line. An empty document changes nothing;
// on error cfg is unchanged.
func LoadConfig(r io.Reader, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("hub config: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("hub config: line %d: expected a mapping of keys to values", m.Line)
	}
	next := *cfg
	fields := map[string]reflect.Value{}
	v := reflect.ValueOf(&next).Elem()
	for i := range v.NumField() {
		if tag := v.Type().Field(i).Tag.Get("yaml"); tag != "" {
			fields[tag] = v.Field(i)
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, val := m.Content[i], m.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("hub config: line %d: unknown key %q", k.Line, k.Value)
		}
		if err := val.Decode(f.Addr().Interface()); err != nil {
			return fmt.Errorf("hub config: line %d: %s: %w", val.Line, k.Value, err)
		}
	}
	*cfg = next
	return nil
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	if c.Data == "" {
		return errors.New("hub config: data: must not be empty")
	}
	for _, a := range []struct{ name, addr string }{{"http", c.HTTP}, {"mqtt", c.MQTT}, {"nats", c.NATS}} {
		_, p, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("hub config: %s: %q is not host:port: %w", a.name, a.addr, err)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("hub config: %s: port %q must be a number from 0 to 65535", a.name, p)
		}
	}
	if c.AdvertiseMQTT != "" {
		h, p, err := net.SplitHostPort(c.AdvertiseMQTT)
		if err != nil {
			return fmt.Errorf("hub config: advertise_mqtt: %q is not host:port: %w", c.AdvertiseMQTT, err)
		}
		if n, err := strconv.Atoi(p); h == "" || err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("hub config: advertise_mqtt: %q needs a host and a port from 1 to 65535", c.AdvertiseMQTT)
		}
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("hub config: max_body_bytes: %d is below the minimum of 1024", c.MaxBodyBytes)
	}
	if c.MaxBatchBytes < 1024 {
		return fmt.Errorf("hub config: max_batch_bytes: %d is below the minimum of 1024", c.MaxBatchBytes)
	}
	if c.MaxMetricPoints < 1000 || c.MaxMetricPoints > 1_000_000 {
		return fmt.Errorf("hub config: max_metric_points: %d is outside 1000..1000000", c.MaxMetricPoints)
	}
	if c.MaxArtifactBytes < 1 {
		return fmt.Errorf("hub config: max_artifact_bytes: %d must be positive", c.MaxArtifactBytes)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("hub config: shutdown_timeout: %s must be positive", c.ShutdownTimeout)
	}
	if c.ReadHeaderTimeout <= 0 {
		return fmt.Errorf("hub config: read_header_timeout: %s must be positive", c.ReadHeaderTimeout)
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("hub config: webhook_url: %q is not an http:// or https:// URL with a host", c.WebhookURL)
		}
	}
	if c.WebhookSecret != "" && c.WebhookURL == "" {
		return errors.New("hub config: webhook_secret: set without webhook_url")
	}
	if c.EventRetention < 0 || c.EventMaxCount < 0 {
		return fmt.Errorf("hub config: event_retention %s, event_max_count %d: must not be negative", c.EventRetention, c.EventMaxCount)
	}
	if c.TelemetryRawRetention <= 0 {
		return fmt.Errorf("hub config: telemetry_raw_retention: %s must be positive", c.TelemetryRawRetention)
	}
	if c.TelemetryRollupRetention < c.TelemetryRawRetention {
		return fmt.Errorf("hub config: telemetry_rollup_retention: %s must be at least telemetry_raw_retention (%s)", c.TelemetryRollupRetention, c.TelemetryRawRetention)
	}
	if c.TelemetryPruneInterval < time.Minute {
		return fmt.Errorf("hub config: telemetry_prune_interval: %s must be at least 1m", c.TelemetryPruneInterval)
	}
	return nil
}
