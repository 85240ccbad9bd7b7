package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestHubWebhookFlags checks --webhook-url and the secret from the
// environment (overridden by --webhook-secret), and that a bad URL is
// refused naming the key.
func TestHubWebhookFlags(t *testing.T) {
	env := map[string]string{"ATELIER_HUB_WEBHOOK_SECRET": "from-env"}
	parse := func(args ...string) (string, string, error) {
		a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return env[k] }, nil)
		serve := a.hubServeCmd()
		if err := serve.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		var f hubServeFlags
		f.webhook, _ = serve.Flags().GetString("webhook-url")
		f.secret, _ = serve.Flags().GetString("webhook-secret")
		cfg, err := a.hubConfig(serve, f)
		return cfg.WebhookURL, cfg.WebhookSecret, err
	}
	u, s, err := parse("--webhook-url", "https://hooks.example.invalid/atelier")
	if err != nil || u != "https://hooks.example.invalid/atelier" || s != "from-env" {
		t.Errorf("url %q secret %q err %v", u, s, err)
	}
	if _, s, err = parse("--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret", "flag"); err != nil || s != "flag" {
		t.Errorf("secret %q err %v, want the flag's", s, err)
	}
	if _, _, err = parse("--webhook-url", "mailto:ops"); err == nil || !strings.Contains(err.Error(), "webhook_url") {
		t.Errorf("bad url: err = %v", err)
	}
	// A secret from the environment alone (no URL) is refused.
	if _, _, err = parse(); err == nil || !strings.Contains(err.Error(), "webhook_secret") {
		t.Errorf("secret without url: err = %v", err)
	}
}
