package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned when the server does not bind its listeners in
// time.
var ErrNotReady = errors.New("broker: not ready")

// Config configures the embedded broker.
type Config struct {
	Name     string // server_name (MQTT requires one)
	NATS     string // host:port of the NATS client listener; port 0 picks a free port
	MQTT     string // host:port of the MQTT listener; port 0 picks a free port
	StoreDir string // JetStream store directory
	// ReadyTimeout bounds Start's wait for the listeners (default 10s).
	ReadyTimeout time.Duration
	// Auth, when set, makes every client authenticate and limits each
	// agent to its own topics (auth.go). Nil leaves the broker open.
	Auth *AuthConfig
}

// MQTTAuthTimeout is how long an MQTT client has, from its TCP connection,
// to have its CONNECT read (nats-server's default is 2 s). When a hub comes
// back after an outage, a thousand agents reconnect at once, each with a
// spool to upload: in bench telemetry --outage 10m, with the hub and the
// fleet filling both cores, 286 handshakes outlived 2 s and were closed
// ("Authentication Timeout"; the agents saw EOF and retried). Agents wait
// 10 s for their CONNACK (mqttsession's ConnectTimeout), so the broker
// waits as long.
const MQTTAuthTimeout = 10 * time.Second

// Broker is a running embedded NATS server. Start it, then Shutdown it.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	opts *server.Options
	ns   *server.Server
	auth *authenticator // always set: without Config.Auth it only holds clients off until Start is done
	// hubSecret is HubUser's password: Config.Auth's, or one made by New
	// for the broker's own setup connection when the broker is open.
	hubSecret string
}

// New checks cfg and returns a broker that is not started yet.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if cfg.Name == "" {
		cfg.Name = "atelier-hub"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("broker: empty store dir")
	}
	nh, np, err := hostPort("nats", cfg.NATS)
	if err != nil {
		return nil, err
	}
	mh, mp, err := hostPort("mqtt", cfg.MQTT)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       nh,
		Port:       np,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		MQTT:       server.MQTTOpts{Host: mh, Port: mp, AuthTimeout: MQTTAuthTimeout.Seconds()},
	}
	b := &Broker{cfg: cfg, log: log, opts: opts}
	if cfg.Auth != nil {
		ac := *cfg.Auth
		if err := ac.check(); err != nil {
			return nil, err
		}
		b.hubSecret = ac.HubSecret
		b.auth = &authenticator{cfg: ac, hubHash: HashSecret(ac.HubSecret), log: log}
	} else {
		b.hubSecret = NewSecret()
		b.auth = &authenticator{open: true, hubHash: HashSecret(b.hubSecret), log: log}
	}
	opts.CustomClientAuthentication = b.auth
	return b, nil
}

// hostPort splits addr; port 0 becomes -1, NATS's "pick a free port".
func hostPort(what, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("broker: %s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("broker: %s address %q: port must be 0-65535", what, addr)
	}
	if port == 0 {
		port = -1
	}
	return h, port, nil
}

// Start starts the server and waits until its listeners are bound.
func (b *Broker) Start(ctx context.Context) error {
	ns, err := server.NewServer(b.opts)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	ns.SetLoggerV2(&logAdapter{log: b.log}, false, false, false)
	b.ns = ns
	b.auth.srv.Store(ns)
	ns.Start()
	if !ns.ReadyForConnections(b.cfg.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("broker: listeners not bound within %s: %w", b.cfg.ReadyTimeout, ErrNotReady)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("broker: jetstream did not start: %w", ErrNotReady)
	}
	if err := b.ensureMQTTMessagesInMemory(ctx, ns); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return err
	}
	b.auth.ready.Store(true) // clients other than the hub's may connect from now on
	return ctx.Err()
}

// NATSAddr is the bound NATS client address (after Start).
func (b *Broker) NATSAddr() string {
	if a := b.ns.Addr(); a != nil {
		return a.String()
	}
	return ""
}

// MQTTAddr is the bound MQTT address (after Start).
func (b *Broker) MQTTAddr() string {
	return net.JoinHostPort(b.opts.MQTT.Host, strconv.Itoa(b.opts.MQTT.Port))
}

// ClientURL is the nats:// URL for in-process or local clients.
func (b *Broker) ClientURL() string { return b.ns.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (b *Broker) Shutdown() {
	if b.ns == nil {
		return
	}
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
}

// logAdapter sends the NATS server's logs to slog.
type logAdapter struct{ log *slog.Logger }

func (l *logAdapter) Noticef(f string, v ...any) {
	l.log.Info(fmt.Sprintf(f, v...), "component", "nats")
}
func (l *logAdapter) Warnf(f string, v ...any) { l.log.Warn(fmt.Sprintf(f, v...), "component", "nats") }
func (l *logAdapter) Fatalf(f string, v ...any) {
	l.log.Error(fmt.Sprintf(f, v...), "component", "nats", "fatal", true)
}
func (l *logAdapter) Errorf(f string, v ...any) {
	l.log.Error(fmt.Sprintf(f, v...), "component", "nats")
}
func (l *logAdapter) Debugf(f string, v ...any) {
	l.log.Debug(fmt.Sprintf(f, v...), "component", "nats")
}
func (l *logAdapter) Tracef(f string, v ...any) {
	l.log.Debug(fmt.Sprintf(f, v...), "component", "nats")
}
