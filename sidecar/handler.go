package sidecar

import (
	"context"
	"log/slog"
	"net"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/policy"
)

// Handler serves the connections of one listener under one config version.
// A reload that leaves a listener's config unchanged keeps its Handler (and so
// its pools and upstream health); a changed config gets a new Handler, and the
// old one serves its open connections until they end or the drain timeout.
type Handler interface {
	// ServeConn owns c from the call on and must close it (c.Close) when
	// done. It may return before that, for instance after handing c to an
	// http.Server. Each call runs on its own goroutine.
	ServeConn(ctx context.Context, c *Conn)
	// Drain asks the handler to wind down: finish in-flight work, close idle
	// keep-alive connections, accept no new requests on open ones.
	Drain()
	// Close releases what the handler holds (pools, timers) once none of its
	// connections is open any more.
	Close() error
}

// Env is what a Builder gets besides its config section.
type Env struct {
	// Name and Kind of the listener.
	Name string
	Kind config.ListenerKind
	// Logger is already tagged with the listener's name.
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// ServerTLS is the listener's client-facing TLS profile, nil for plaintext.
	ServerTLS *TLSProfile
	// Dialer opens the TCP or Unix connections to upstreams (tests replace it).
	Dialer Dialer
	// Config is the whole config version the handler belongs to.
	Config *config.Config
	// RequestReload asks the process to read its config again, as SIGHUP
	// does (nil in tests that build handlers directly).
	RequestReload func()
	// Version is the build's version ("" if unknown).
	Version string
	// Policy is the live policy engine of the process (nil in tests that
	// build handlers directly: no policy). It is the same across reloads
	// and holds the engine of the live version: a frontend loads it before
	// each check.
	Policy *policy.Live
	// AccessLog is the access log of the process (nil in tests that build
	// handlers directly; its methods are no-ops on nil). Like Policy it is
	// the same across reloads and follows the live access_log section, so a
	// handler keeps the pointer: ask Want per request, then Log.
	AccessLog *AccessLog
	// Tracer makes the spans of queries and commands (nil in tests that
	// build handlers directly; a no-op then, as with tracing off). It is the
	// same across reloads and follows the live tracing section.
	Tracer *Tracer
}

// Builder makes a Handler from one listener section: a *config.TCP,
// *config.HTTP, *config.Postgres or *config.Redis.
type Builder func(env Env, section any) (Handler, error)

// Dialer opens network connections; *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}
