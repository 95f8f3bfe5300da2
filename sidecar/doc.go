// Package sidecar is the generic core that every listener shares: listeners
// and graceful drain, TLS profiles, upstream dialing, the plain TCP proxy, the
// HTTP reverse proxy and the admin HTTP server. The Postgres and Redis
// frontends plug into it as Builders.
//
// # Data flow
//
// Server.Apply takes a validated *config.Config and builds everything that
// version needs: TLS profiles, one Handler per listener (through the Builder
// of its kind), sockets for new addresses, the admin server. Only when all of
// it succeeded is it swapped in; otherwise it is torn down and the running
// version is untouched. Unchanged parts are carried over by config.Hash: a
// listener whose address is unchanged keeps its socket, one whose whole
// section (and TLS profile) is unchanged keeps its Handler, and so its pools
// and open connections.
//
// A Listener owns one socket and its accept loop. Each accepted connection is
// admitted by the listener's current handlerRef (max_connections, metrics,
// tracking) as a *Conn and served by Handler.ServeConn on its own goroutine.
// A replaced or removed handler is retired: it admits nothing more, is asked
// to Drain, and its connections get shutdown.drain_timeout to end before they
// are closed; then the Handler is closed.
//
// # Goroutines
//
// One accept goroutine per listener; one goroutine per connection (two more
// while TCPProxy pipes bytes, one per direction); one watch goroutine per TLS
// profile; one goroutine per retiring handler; the admin http.Server.
//
// # Observability shared by every handler
//
// Three things live as long as the Server, not per config version, and are
// handed to every Handler through Env: the policy engine (policy.Live), the
// AccessLog and the Tracer. Apply swaps what is behind them (an atomic
// pointer each) when their config section changed, so a handler that a
// reload carried over follows the new access_log and tracing sections too.
// Their per-request methods are safe on nil (tests that build an Env by hand
// leave them nil) and cost an atomic load when off: a frontend calls them
// unconditionally.
//
// Per query or command a frontend does, in this order:
//
//	ctx := sidecar.TraceContextFromSQL(ctx, sql)       // Postgres: a sqlcommenter traceparent
//	ctx, span := env.Tracer.StartDB(ctx, &sidecar.DBSpan{...})
//	... serve the request ...
//	sidecar.EndDB(span, outcome, code, rows)
//	if env.AccessLog.Want(d, outcome != metrics.OutcomeOK) { env.AccessLog.Log(&sidecar.AccessEntry{...}) }
//
// GET /clients asks each handler that implements ClientLister for its
// clients, and lists the connections of the others (tcp, http) from what
// the listener tracks. A replaced handler's clients are listed until it has
// drained.
//
// # TLS
//
// A TLSProfile re-reads its certificate, key and CA every reload_interval and
// serves the last good set through tls.Config.GetConfigForClient, so rotation
// needs no restart. PeerIdentity turns a verified client certificate into a
// principal: the SPIFFE URI SAN, else the subject CN.
package sidecar
