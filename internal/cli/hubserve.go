package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub/server"
)

func (a *app) hubCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub",
	}
	cmd.AddCommand(a.hubServeCmd())
	return cmd
}

// hubServeFlags are the flags of `hub serve`.
type hubServeFlags struct {
	config    string
	data      string
	http      string
	mqtt      string
	nats      string
	advertise string
	webhook   string
	secret    string
	logFormat string
	logLevel  string
}

func (a *app) hubServeCmd() *cobra.Command {
	var f hubServeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a hub: the REST API, the store and the embedded MQTT/NATS broker",
		Long: `Run a hub in the foreground until interrupted (SIGINT or SIGTERM).

Settings come from, in increasing precedence: the defaults, the environment
(ATELIER_HUB_DATA, ATELIER_HUB_HTTP, ATELIER_HUB_MQTT, ATELIER_HUB_NATS), the
YAML file given by --config (keys: data, http, mqtt, nats, advertise_mqtt,
max_body_bytes, max_batch_bytes, max_metric_points, max_artifact_bytes,
shutdown_timeout, read_header_timeout, webhook_url, webhook_secret,
event_retention, event_max_count), and the flags. Once listening, the hub
writes the bound addresses to <data>/hub.addr as JSON (useful with port 0).
--advertise-mqtt is the broker address enrolling agents are told to use, when
they reach it by another name than the bound --mqtt address.

--webhook-url makes the hub POST every event (docs/events.md) as JSON to that URL,
in order and at least once; with a secret (--webhook-secret, or better
ATELIER_HUB_WEBHOOK_SECRET or the config file, which other users cannot read in
the process list) each request is signed with an X-Atelier-Signature HMAC-SHA256
header.

The HTTP API has no authentication yet: keep it on loopback.`,
		Args: argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.hubConfig(cmd, f)
			if err != nil {
				return err
			}
			log, err := newLogger(a.stderr, f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, log)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file")
	fl.StringVar(&f.data, "data", "", "data directory (default $ATELIER_HUB_DATA, else "+defaultDataHint+")")
	fl.StringVar(&f.http, "http", "", "HTTP API listen address HOST:PORT (default 127.0.0.1:8780)")
	fl.StringVar(&f.mqtt, "mqtt", "", "MQTT listen address HOST:PORT (default 127.0.0.1:1883)")
	fl.StringVar(&f.nats, "nats", "", "NATS listen address HOST:PORT (default 127.0.0.1:4222)")
	fl.StringVar(&f.advertise, "advertise-mqtt", "", "MQTT address HOST:PORT enrollment gives agents (default: the bound --mqtt address)")
	fl.StringVar(&f.webhook, "webhook-url", "", "POST every event as JSON to this http(s) URL")
	fl.StringVar(&f.secret, "webhook-secret", "", "sign webhook requests with HMAC-SHA256 under this secret (prefer $ATELIER_HUB_WEBHOOK_SECRET)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// defaultDataHint describes the default data directory without expanding
// the home directory (so the generated docs do not depend on who ran it).
const defaultDataHint = "$XDG_DATA_HOME/atelier or ~/.local/share/atelier"

// hubConfig layers defaults, environment, config file and flags.
func (a *app) hubConfig(cmd *cobra.Command, f hubServeFlags) (server.Config, error) {
	cfg := server.DefaultConfig()
	for _, e := range []struct {
		env string
		dst *string
	}{
		{"ATELIER_HUB_DATA", &cfg.Data},
		{"ATELIER_HUB_HTTP", &cfg.HTTP},
		{"ATELIER_HUB_MQTT", &cfg.MQTT},
		{"ATELIER_HUB_NATS", &cfg.NATS},
		{"ATELIER_HUB_WEBHOOK_SECRET", &cfg.WebhookSecret},
	} {
		if v := a.getenv(e.env); v != "" {
			*e.dst = v
		}
	}
	if f.config != "" {
		file, err := os.Open(f.config)
		if err != nil {
			return cfg, fmt.Errorf("hub config: %w", err)
		}
		err = server.LoadConfig(file, &cfg)
		file.Close()
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", f.config, err)
		}
	}
	for _, fl := range []struct {
		name string
		val  string
		dst  *string
	}{
		{"data", f.data, &cfg.Data},
		{"http", f.http, &cfg.HTTP},
		{"mqtt", f.mqtt, &cfg.MQTT},
		{"nats", f.nats, &cfg.NATS},
		{"advertise-mqtt", f.advertise, &cfg.AdvertiseMQTT},
		{"webhook-url", f.webhook, &cfg.WebhookURL},
		{"webhook-secret", f.secret, &cfg.WebhookSecret},
	} {
		if cmd.Flags().Changed(fl.name) {
			*fl.dst = fl.val
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// newLogger builds the hub's logger on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError("--log-format %q: must be text or json", format)
}
