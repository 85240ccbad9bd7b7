package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHubConfigPrecedence checks flags > config file > environment >
// defaults, field by field.
func TestHubConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	if err := os.WriteFile(file, []byte("http: 127.0.0.1:9001\nmqtt: 127.0.0.1:9002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"ATELIER_HUB_DATA": "/env/data",
		"ATELIER_HUB_HTTP": "127.0.0.1:7001",
		"ATELIER_HUB_MQTT": "127.0.0.1:7002",
		"ATELIER_HUB_NATS": "127.0.0.1:7003",
	}
	tests := []struct {
		name                   string
		flags                  []string
		env                    map[string]string
		data, http, mqtt, nats string
	}{
		{"defaults", nil, nil, "", "127.0.0.1:8780", "127.0.0.1:1883", "127.0.0.1:4222"},
		{"env", nil, env, "/env/data", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		{"file over env", []string{"--config", file}, env, "/env/data", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:7003"},
		{"flags over file", []string{"--config", file, "--http", "127.0.0.1:0", "--data", "/flag"}, env, "/flag", "127.0.0.1:0", "127.0.0.1:9002", "127.0.0.1:7003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return tt.env[k] }, nil)
			serve := a.hubServeCmd()
			if err := serve.ParseFlags(tt.flags); err != nil {
				t.Fatal(err)
			}
			var f hubServeFlags
			f.config, _ = serve.Flags().GetString("config")
			f.data, _ = serve.Flags().GetString("data")
			f.http, _ = serve.Flags().GetString("http")
			f.mqtt, _ = serve.Flags().GetString("mqtt")
			f.nats, _ = serve.Flags().GetString("nats")
			cfg, err := a.hubConfig(serve, f)
			if err != nil {
				t.Fatal(err)
			}
			if tt.data != "" && cfg.Data != tt.data {
				t.Errorf("data %q, want %q", cfg.Data, tt.data)
			}
			if cfg.HTTP != tt.http || cfg.MQTT != tt.mqtt || cfg.NATS != tt.nats {
				t.Errorf("http %q mqtt %q nats %q, want %q %q %q", cfg.HTTP, cfg.MQTT, cfg.NATS, tt.http, tt.mqtt, tt.nats)
			}
		})
	}
}

func TestHubConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("http: 127.0.0.1:1\nlisten: x\n"), 0o644)
	tests := []struct {
		name  string
		flags []string
		want  string
	}{
		{"unknown key", []string{"--config", bad}, `line 2: .*listen`},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, `none\.yaml`},
		{"bad address", []string{"--http", "nohost"}, `http: "nohost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := Main(t.Context(), append([]string{"hub", "serve", "--data", dir}, tt.flags...), &bytes.Buffer{}, &stderr, func(string) string { return "" }, nil)
			if code != 1 || !strings.HasPrefix(stderr.String(), "atelier: ") || !regexp.MustCompile(tt.want).MatchString(stderr.String()) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 1 and a line naming %q", code, stderr.String(), tt.want)
			}
		})
	}
}

// TestHubServeRetentionFlags checks the retention flags over the config
// file and the defaults, field by field.
func TestHubServeRetentionFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	if err := os.WriteFile(file, []byte("telemetry_raw_retention: 2h\nevent_max_count: 5\nevent_retention: 48h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		raw, rollup, prune, events time.Duration
		count                      int64
	}
	def := want{24 * time.Hour, 720 * time.Hour, time.Hour, 720 * time.Hour, 1_000_000}
	tests := []struct {
		name  string
		flags []string
		want  want
	}{
		{"defaults", nil, def},
		{"every flag", []string{"--telemetry-raw-retention", "12h", "--telemetry-rollup-retention", "48h", "--telemetry-prune-interval", "10m",
			"--event-retention", "0", "--event-max-count", "0"}, want{12 * time.Hour, 48 * time.Hour, 10 * time.Minute, 0, 0}},
		{"raw equal to rollup", []string{"--telemetry-raw-retention", "720h"}, want{720 * time.Hour, 720 * time.Hour, time.Hour, 720 * time.Hour, 1_000_000}},
		{"file", []string{"--config", file}, want{2 * time.Hour, 720 * time.Hour, time.Hour, 48 * time.Hour, 5}},
		{"flags over file", []string{"--config", file, "--telemetry-rollup-retention", "3h", "--telemetry-raw-retention", "90m", "--event-max-count", "7"},
			want{90 * time.Minute, 3 * time.Hour, time.Hour, 48 * time.Hour, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }, nil)
			serve, f := a.hubServe()
			if err := serve.ParseFlags(append([]string{"--data", dir}, tt.flags...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := a.hubConfig(serve, *f)
			if err != nil {
				t.Fatal(err)
			}
			got := want{cfg.TelemetryRawRetention, cfg.TelemetryRollupRetention, cfg.TelemetryPruneInterval, cfg.EventRetention, cfg.EventMaxCount}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHubServeRetentionFlagErrors checks that a bad retention flag stops
// `hub serve` before it touches the data directory, with exit code 2 and
// a line naming the flag and quoting its value (exit code 1 and the key for
// a bad config file).
func TestHubServeRetentionFlagErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	if err := os.WriteFile(file, []byte("telemetry_raw_retention: 48h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.yaml")
	if err := os.WriteFile(short, []byte("telemetry_rollup_retention: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"raw zero", []string{"--telemetry-raw-retention", "0"}, 2,
			`--telemetry-raw-retention "0": expected a positive duration such as 24h or 90m`},
		{"raw negative", []string{"--telemetry-raw-retention", "-1h"}, 2,
			`--telemetry-raw-retention "-1h": expected a positive duration such as 24h or 90m`},
		{"raw in days", []string{"--telemetry-raw-retention", "1d"}, 2,
			`--telemetry-raw-retention "1d": expected a positive duration such as 24h or 90m`},
		{"rollup zero", []string{"--telemetry-rollup-retention", "0s"}, 2,
			`--telemetry-rollup-retention "0s": expected a positive duration such as 720h`},
		{"prune too often", []string{"--telemetry-prune-interval", "30s"}, 2,
			`--telemetry-prune-interval "30s": expected a duration of at least 1m, such as 1h`},
		{"event retention negative", []string{"--event-retention", "-1h"}, 2,
			`--event-retention "-1h": expected a duration such as 720h, or 0 for no age limit`},
		{"event count negative", []string{"--event-max-count", "-5"}, 2,
			`--event-max-count "-5": expected a whole number of events, or 0 for no limit`},
		{"event count not a number", []string{"--event-max-count", "1e6"}, 2,
			`--event-max-count "1e6": expected a whole number of events, or 0 for no limit`},
		{"raw above rollup", []string{"--telemetry-raw-retention", "48h", "--telemetry-rollup-retention", "24h"}, 2,
			`--telemetry-raw-retention "48h" is longer than --telemetry-rollup-retention "24h": rollups are made from raw batches, so the rollup retention must be at least the raw one`},
		{"raw above the default rollup", []string{"--telemetry-raw-retention", "1000h"}, 2,
			`--telemetry-raw-retention "1000h" is longer than the rollup retention 720h (telemetry_rollup_retention, from --config or the default): ` +
				`rollups are made from raw batches, so the rollup retention must be at least the raw one; raise --telemetry-rollup-retention too`},
		{"rollup below the file's raw", []string{"--config", file, "--telemetry-rollup-retention", "24h"}, 2,
			`--telemetry-rollup-retention "24h" is shorter than the raw retention 48h (telemetry_raw_retention, from --config or the default): ` +
				`rollups are made from raw batches, so the rollup retention must be at least the raw one; lower --telemetry-raw-retention too`},
		{"file alone", []string{"--config", short}, 1,
			`hub config: telemetry_rollup_retention: 1h0m0s must be at least telemetry_raw_retention (24h0m0s)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			var stderr bytes.Buffer
			code := Main(t.Context(), append([]string{"hub", "serve", "--data", data}, tt.flags...), &bytes.Buffer{}, &stderr, func(string) string { return "" }, nil)
			// Usage errors (exit 2) add a line pointing at --help.
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if code != tt.code || first != "atelier: "+tt.want {
				t.Errorf("exit %d, stderr %q; want %d and a first line %q", code, stderr.String(), tt.code, "atelier: "+tt.want)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was touched: %v", err)
			}
		})
	}
}
