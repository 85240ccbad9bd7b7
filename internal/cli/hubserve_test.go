package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
