package server

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cfg := DefaultConfig()
	err := LoadConfig(strings.NewReader("data: /tmp/x\nhttp: 127.0.0.1:9000\nshutdown_timeout: 3s\nmax_metric_points: 5000\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Data != "/tmp/x" || cfg.HTTP != "127.0.0.1:9000" || cfg.ShutdownTimeout != 3*time.Second || cfg.MaxMetricPoints != 5000 {
		t.Errorf("loaded %+v", cfg)
	}
	if cfg.MQTT != DefaultConfig().MQTT {
		t.Errorf("absent key changed: mqtt = %q", cfg.MQTT)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := LoadConfig(strings.NewReader(""), &cfg); err != nil {
		t.Errorf("empty document: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"htpp: 1.2.3.4:5\n", "htpp"},
		{"shutdown_timeout: soon\n", "soon"},
		{"max_body_bytes: [1]\n", "max_body_bytes"},
	} {
		c := DefaultConfig()
		if err := LoadConfig(strings.NewReader(tc.yaml), &c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadConfig(%q) = %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"data", func(c *Config) { c.Data = "" }, "data"},
		{"http", func(c *Config) { c.HTTP = "nohost" }, "http"},
		{"mqtt port", func(c *Config) { c.MQTT = "127.0.0.1:70000" }, "mqtt"},
		{"nats port", func(c *Config) { c.NATS = "127.0.0.1:x" }, "nats"},
		{"max_body_bytes", func(c *Config) { c.MaxBodyBytes = 1 }, "max_body_bytes"},
		{"max_metric_points", func(c *Config) { c.MaxMetricPoints = 10 }, "max_metric_points"},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tc.want)
			}
			if _, err := New(c, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}
