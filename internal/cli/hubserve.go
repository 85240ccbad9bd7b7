package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

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
	pprof     bool

	// Retention, kept as typed so errors can quote it (docs/monitoring.md,
	// docs/events.md).
	rawRetention    string
	rollupRetention string
	pruneInterval   string
	eventRetention  string
	eventMaxCount   string
}

func (a *app) hubServeCmd() *cobra.Command {
	cmd, _ := a.hubServe()
	return cmd
}

// hubServe builds `hub serve` and returns it with the flags it parses into.
func (a *app) hubServe() (*cobra.Command, *hubServeFlags) {
	f := new(hubServeFlags)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a hub: the REST API, the store and the embedded MQTT/NATS broker",
		Long: `Run a hub in the foreground until interrupted (SIGINT or SIGTERM).

Settings come from, in increasing precedence: the defaults, the environment
(ATELIER_HUB_DATA, ATELIER_HUB_HTTP, ATELIER_HUB_MQTT, ATELIER_HUB_NATS), the
YAML file given by --config (keys: data, http, mqtt, nats, advertise_mqtt,
max_body_bytes, max_batch_bytes, max_metric_points, max_artifact_bytes,
shutdown_timeout, read_header_timeout, webhook_url, webhook_secret,
event_retention, event_max_count, telemetry_raw_retention,
telemetry_rollup_retention, telemetry_prune_interval, pprof), and the flags. Once
listening, the hub writes the bound addresses to <data>/hub.addr as JSON
(useful with port 0). --advertise-mqtt is the broker address enrolling agents
are told to use, when they reach it by another name than the bound --mqtt
address.

Retention: raw telemetry batches are kept for --telemetry-raw-retention, then
folded into 1-minute rollups kept for --telemetry-rollup-retention (at least
the raw retention); the retention runs at start and every
--telemetry-prune-interval (docs/monitoring.md). Events older than
--event-retention, and the oldest beyond --event-max-count, are removed hourly
(0: no limit; docs/events.md).

--webhook-url makes the hub POST every event (docs/events.md) as JSON to that URL,
in order and at least once; with a secret (--webhook-secret, or better
ATELIER_HUB_WEBHOOK_SECRET or the config file, which other users cannot read in
the process list) each request is signed with an X-Atelier-Signature HMAC-SHA256
header.

The HTTP API has no authentication yet: keep it on loopback.`,
		Args: argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.hubConfig(cmd, *f)
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
	fl.StringVar(&f.rawRetention, "telemetry-raw-retention", "", "keep raw telemetry batches this long, then only their 1-minute rollups (default 24h)")
	fl.StringVar(&f.rollupRetention, "telemetry-rollup-retention", "", "keep 1-minute telemetry rollups this long, at least the raw retention (default 720h)")
	fl.StringVar(&f.pruneInterval, "telemetry-prune-interval", "", "run the telemetry retention this often, at least 1m (default 1h)")
	fl.StringVar(&f.eventRetention, "event-retention", "", "remove events older than this, 0 for no age limit (default 720h)")
	fl.StringVar(&f.eventMaxCount, "event-max-count", "", "keep at most this many events, removing the oldest, 0 for no limit (default 1000000)")
	fl.BoolVar(&f.pprof, "pprof", false, "serve Go's runtime profiles at /debug/pprof/ on the HTTP API (for diagnosing CPU and memory use)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd, f
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
	if cmd.Flags().Changed("pprof") {
		cfg.Pprof = f.pprof
	}
	if err := retentionFlags(cmd, f, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// retentionFlags parses the retention flags that were given onto cfg and
// checks them, naming the flag and quoting its value; what the config file
// or the defaults set is checked by cfg.Validate, naming the key.
func retentionFlags(cmd *cobra.Command, f hubServeFlags, cfg *server.Config) error {
	changed := cmd.Flags().Changed
	for _, d := range []struct {
		name, val string
		dst       *time.Duration
		min       time.Duration // smallest value allowed
		want      string        // what is expected, for the error
	}{
		{"telemetry-raw-retention", f.rawRetention, &cfg.TelemetryRawRetention, 1, "a positive duration such as 24h or 90m"},
		{"telemetry-rollup-retention", f.rollupRetention, &cfg.TelemetryRollupRetention, 1, "a positive duration such as 720h"},
		{"telemetry-prune-interval", f.pruneInterval, &cfg.TelemetryPruneInterval, time.Minute, "a duration of at least 1m, such as 1h"},
		{"event-retention", f.eventRetention, &cfg.EventRetention, 0, "a duration such as 720h, or 0 for no age limit"},
	} {
		if !changed(d.name) {
			continue
		}
		v, err := time.ParseDuration(d.val)
		if err != nil || v < d.min {
			return usageError("--%s %q: expected %s", d.name, d.val, d.want)
		}
		*d.dst = v
	}
	if changed("event-max-count") {
		n, err := strconv.ParseInt(f.eventMaxCount, 10, 64)
		if err != nil || n < 0 {
			return usageError("--event-max-count %q: expected a whole number of events, or 0 for no limit", f.eventMaxCount)
		}
		cfg.EventMaxCount = n
	}
	raw, rollup := cfg.TelemetryRawRetention, cfg.TelemetryRollupRetention
	if rollup >= raw || !changed("telemetry-raw-retention") && !changed("telemetry-rollup-retention") {
		return nil
	}
	const why = "rollups are made from raw batches, so the rollup retention must be at least the raw one"
	switch {
	case changed("telemetry-raw-retention") && changed("telemetry-rollup-retention"):
		return usageError("--telemetry-raw-retention %q is longer than --telemetry-rollup-retention %q: %s", f.rawRetention, f.rollupRetention, why)
	case changed("telemetry-raw-retention"):
		return usageError("--telemetry-raw-retention %q is longer than the rollup retention %s (telemetry_rollup_retention, from --config or the default): %s; raise --telemetry-rollup-retention too",
			f.rawRetention, shortDuration(rollup), why)
	default:
		return usageError("--telemetry-rollup-retention %q is shorter than the raw retention %s (telemetry_raw_retention, from --config or the default): %s; lower --telemetry-raw-retention too",
			f.rollupRetention, shortDuration(raw), why)
	}
}

// shortDuration prints d without zero trailing units: 720h, not 720h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
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
