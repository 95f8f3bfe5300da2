package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace starts every metric name.
const Namespace = "outrigger"

// LatencyBuckets spans 50 µs to 10 s, for query, command and request latency.
var LatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Metrics holds every metric of one process.
type Metrics struct {
	// Registry is what /metrics serves.
	Registry *prometheus.Registry

	BuildInfo *prometheus.GaugeVec
	// Up is always 1 while the process runs.
	Up prometheus.Gauge

	// Listener connections, labelled by listener name and kind.
	ConnAccepted *prometheus.CounterVec
	ConnActive   *prometheus.GaugeVec
	ConnClosed   *prometheus.CounterVec
	// ConnRefused counts connections closed at accept, by reason
	// (max_connections, draining, tls).
	ConnRefused   *prometheus.CounterVec
	BytesReceived *prometheus.CounterVec
	BytesSent     *prometheus.CounterVec
	Draining      prometheus.Gauge

	// Upstream connects, labelled by listener and upstream address.
	UpstreamConnectDuration *prometheus.HistogramVec
	UpstreamConnectFailures *prometheus.CounterVec
	UpstreamHealthy         *prometheus.GaugeVec

	// TLS.
	TLSHandshakes    *prometheus.CounterVec
	TLSCertExpiry    *prometheus.GaugeVec
	TLSReloads       *prometheus.CounterVec
	TLSHandshakeTime *prometheus.HistogramVec

	// Config reloads.
	ConfigReloads           *prometheus.CounterVec
	ConfigLastReloadSuccess prometheus.Gauge
	ConfigReloadApply       prometheus.Histogram
	ConfigPushLatency       prometheus.Histogram
	ConfigHash              *prometheus.GaugeVec

	// HTTP reverse proxy, labelled by listener and route (its prefix).
	HTTPRequests         *prometheus.CounterVec
	HTTPRequestDuration  *prometheus.HistogramVec
	HTTPRetries          *prometheus.CounterVec
	HTTPRetriesExhausted *prometheus.CounterVec

	// Redis frontend, labelled by listener; command names come from the
	// command table ("unknown" for the rest).
	//
	// RedisCommandResults counts commands by outcome (see Outcome) and
	// error_class (RedisErrorClass); RedisRecorder updates it.
	RedisCommandResults  *prometheus.CounterVec
	RedisCommandDuration *prometheus.HistogramVec
	RedisClients         *prometheus.GaugeVec
	RedisPins            *prometheus.CounterVec
	RedisUpstreamConns   *prometheus.GaugeVec
	RedisUpstreamProbes  *prometheus.CounterVec

	// Postgres frontend, labelled by listener and pool (database/user of a
	// pool whose credentials a server accepted; at most 256 per listener).
	//
	// PGQueryResults counts round trips by outcome (see Outcome) and
	// error_class (SQLStateClass); PGPoolRecorder updates it.
	PGQueryResults        *prometheus.CounterVec
	PGQueryDuration       *prometheus.HistogramVec
	PGTransactions        *prometheus.CounterVec
	PGTransactionDuration *prometheus.HistogramVec
	PGClients             *prometheus.GaugeVec
	PGPins                *prometheus.CounterVec
	PGPrepared            *prometheus.CounterVec
	PGCancels             *prometheus.CounterVec
	PGUpstreamErrors      *prometheus.CounterVec
	PGAuthQueries         *prometheus.CounterVec
	PGTerminations        *prometheus.CounterVec

	// Connection pools of any frontend.
	PoolAcquireWait *prometheus.HistogramVec
	Pools           *PoolCollector
	// RedisInFlight is outrigger_redis_in_flight_commands, read from each
	// redis listener at scrape time.
	RedisInFlight *InFlightCollector

	// PolicyDecisions counts policy decisions by listener, rule (a rule or
	// rate limit name, or "default") and decision: allow, deny,
	// rate_limited, delayed, audit_deny. Package policy updates it.
	PolicyDecisions *prometheus.CounterVec
}

// BuildInfo describes the binary for the outrigger_build_info metric.
type BuildInfo struct {
	Version, Commit string
}

// New creates every metric on a fresh registry that also carries the Go runtime
// and process collectors.
func New(info BuildInfo) *Metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg}
	listener := []string{"listener", "kind"}
	m := &Metrics{
		Registry: reg,
		BuildInfo: f.gaugeVec("", "build_info",
			"Always 1; the labels say which build is running.", "version", "commit", "go_version"),
		Up: f.gauge("", "up", "Always 1 while the process runs."),

		ConnAccepted: f.counterVec("listener", "connections_accepted_total",
			"Client connections accepted.", listener...),
		ConnActive: f.gaugeVec("listener", "connections_active",
			"Client connections open now.", listener...),
		ConnClosed: f.counterVec("listener", "connections_closed_total",
			"Client connections closed.", listener...),
		ConnRefused: f.counterVec("listener", "connections_refused_total",
			"Client connections closed at accept: max_connections reached, draining, or a failed TLS handshake.", "listener", "kind", "reason"),
		BytesReceived: f.counterVec("listener", "received_bytes_total",
			"Bytes received from clients.", listener...),
		BytesSent: f.counterVec("listener", "sent_bytes_total",
			"Bytes sent to clients.", listener...),
		Draining: f.gauge("", "draining",
			"1 while the process drains for shutdown, else 0."),

		UpstreamConnectDuration: f.histogramVec("upstream", "connect_duration_seconds",
			"Time to connect to an upstream, TLS handshake included.", LatencyBuckets, "listener", "upstream"),
		UpstreamConnectFailures: f.counterVec("upstream", "connect_failures_total",
			"Failed upstream connects.", "listener", "upstream"),
		UpstreamHealthy: f.gaugeVec("upstream", "healthy",
			"1 if the upstream address is in rotation, 0 while it is skipped after failures.", "listener", "upstream"),

		TLSHandshakes: f.counterVec("tls", "handshakes_total",
			"Client-facing TLS handshakes by result (ok, error) and reason (none, no_certificate, unknown_ca, expired_certificate, bad_certificate, client_rejected_certificate, protocol, timeout, client_closed, other).",
			"listener", "result", "reason"),
		TLSHandshakeTime: f.histogramVec("tls", "handshake_duration_seconds",
			"Client-facing TLS handshake time.", LatencyBuckets, "listener"),
		TLSCertExpiry: f.gaugeVec("tls", "certificate_expiry_timestamp_seconds",
			"Unix time at which a loaded certificate expires (the leaf; for CA bundles the earliest).", "profile", "file"),
		TLSReloads: f.counterVec("tls", "reloads_total",
			"Certificate reloads from disk by result (success, error).", "profile", "result"),

		ConfigReloads: f.counterVec("config", "reloads_total",
			"Config reloads by result: success, or rejected (the running config stays).", "result"),
		ConfigLastReloadSuccess: f.gauge("config", "last_reload_success_timestamp_seconds",
			"Unix time of the last config that went live."),
		ConfigReloadApply: f.histogram("config", "reload_apply_duration_seconds",
			"Time to build, validate and swap in a new config.", LatencyBuckets),
		ConfigPushLatency: f.histogram("config", "push_latency_seconds",
			"Time from a change of the config file to the new config being live.",
			[]float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
		ConfigHash: f.gaugeVec("config", "info",
			"Always 1; the hash label identifies the config that is live.", "hash"),

		HTTPRequests: f.counterVec("http", "requests_total",
			"Proxied HTTP requests by route and status code class (2xx..5xx; 499 when the client went away counts as 4xx).", "listener", "route", "code"),
		HTTPRequestDuration: f.histogramVec("http", "request_duration_seconds",
			"Proxied HTTP request time up to the response headers, retries included.", LatencyBuckets, "listener", "route"),
		HTTPRetries: f.counterVec("http", "retries_total",
			"Upstream retries by reason (connect, status).", "listener", "route", "reason"),
		HTTPRetriesExhausted: f.counterVec("http", "retry_budget_exhausted_total",
			"Retries skipped because the listener's retry budget was spent.", "listener", "route"),

		RedisCommandResults: f.counterVec("redis", "command_results_total",
			"Redis commands answered, by command, outcome (ok, error, proxy_error, denied, rate_limited, timeout) and error_class (the error reply's code from a fixed list, other, or none).",
			"listener", "command", "outcome", "error_class"),
		RedisCommandDuration: f.histogramVec("redis", "command_duration_seconds",
			"Time from reading a command to its reply being ready, by command.", LatencyBuckets, "listener", "command"),
		RedisClients: f.gaugeVec("redis", "clients",
			"Client sessions open on a redis listener.", "listener"),
		RedisUpstreamConns: f.gaugeVec("redis", "upstream_connections",
			"Upstream connections open, by kind: shared (multiplexed), pinned (dedicated, in use or idle in their pool) or control (dialled for one out-of-band command such as SCRIPT KILL).",
			"listener", "kind"),
		RedisUpstreamProbes: f.counterVec("redis", "upstream_probes_total",
			"Probes on a new connection made when a reply was late beyond pool.command_timeout, by result: alive (the upstream answered, so its replies are late because it is busy, and the commands wait on) or dead (no answer: the late connection is closed and its commands fail).",
			"listener", "result"),
		RedisPins: f.counterVec("redis", "pins_total",
			"Dedicated upstream connections taken by clients, by reason: transaction, watch, blocking, pubsub, monitor, client_mode.",
			"listener", "reason"),

		PGQueryResults: f.counterVec("pg", "query_results_total",
			"Query round trips by pool, outcome (ok, error, proxy_error, denied, rate_limited, timeout) and error_class (the SQLSTATE class of the error the client got, other, or none).",
			"listener", "pool", "outcome", "error_class"),
		PGQueryDuration: f.histogramVec("pg", "query_duration_seconds",
			"Time from a client's Query or Sync being read to its ReadyForQuery being sent, by pool.", LatencyBuckets, "listener", "pool"),
		PGTransactions: f.counterVec("pg", "transactions_total",
			"Transactions (explicit, or one implicit per statement) by pool and outcome: commit, rollback.",
			"listener", "pool", "outcome"),
		PGTransactionDuration: f.histogramVec("pg", "transaction_duration_seconds",
			"Time a transaction held its server connection, by pool.", LatencyBuckets, "listener", "pool"),
		PGClients: f.gaugeVec("pg", "clients",
			"Client sessions open on a postgres listener (after login).", "listener"),
		PGPins: f.counterVec("pg", "pins_total",
			"Clients pinned to one server connection for the rest of their session in transaction mode, by reason: listen, advisory_lock, temp_table, with_hold_cursor, prepare, set_role, load, dynamic_set, do_block.",
			"listener", "reason"),
		PGPrepared: f.counterVec("pg", "prepared_statements_total",
			"Named Parse messages in transaction mode by result: hit (the server had the statement), miss (prepared on the server), eviction (closed on the server for max_prepared_statements, or left behind by a schema change), retired (a shared statement the server found planned for an old schema: it is prepared anew).",
			"listener", "result"),
		PGCancels: f.counterVec("pg", "cancels_total",
			"Cancels by result: forwarded (a client's CancelRequest, to the server running its query), queued (the query was still waiting for a server: it never runs, the client gets 57014), idle (the client had nothing running), unknown (no such client key), query_timeout (sent by Outrigger for pool.query_timeout).",
			"listener", "result"),
		PGUpstreamErrors: f.counterVec("pg", "upstream_errors_total",
			"Server connection failures by class: connect, auth, lost (closed or broken while in use), reset (cleanup failed).",
			"listener", "class"),
		PGAuthQueries: f.counterVec("pg", "auth_queries_total",
			"Logins of users not in auth.users, by how auth_query answered: found (a verifier), missing (no such user, or a NULL password), error (the query or the auth_user login failed; the client got a FATAL), cached (answered from auth_cache_ttl's cache).",
			"listener", "result"),
		PGTerminations: f.counterVec("pg", "client_terminations_total",
			"Clients Outrigger ended with a FATAL, by reason: transaction_timeout (a transaction open longer than pool.transaction_timeout), kill_client (KILL_CLIENT on the admin console).",
			"listener", "reason"),

		PoolAcquireWait: f.histogramVec("pool", "acquire_wait_seconds",
			"Time a client waited in a pool's queue for a connection.", LatencyBuckets, "listener", "pool"),

		PolicyDecisions: f.counterVec("policy", "decisions_total",
			"Policy decisions on queries and commands, one per check, by rule (a rule or rate limit name, or default) and decision: allow, deny, rate_limited, delayed (allowed after a wait), audit_deny (allowed by an audit-mode rule that would deny).",
			"listener", "rule", "decision"),
	}
	m.Pools = newPoolCollector()
	reg.MustRegister(m.Pools)
	m.RedisInFlight = newInFlightCollector()
	reg.MustRegister(m.RedisInFlight)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.BuildInfo.WithLabelValues(info.Version, info.Commit, runtime.Version()).Set(1)
	m.Up.Set(1)
	return m
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counterVec(sub, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(sub, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) gauge(sub, name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(sub, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogram(sub, name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

// ForgetListener deletes every series of a listener that a reload removed, so
// dashboards and alerts do not see its last values forever.
func (m *Metrics) ForgetListener(name string) {
	l := prometheus.Labels{"listener": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.ConnAccepted, m.ConnActive, m.ConnClosed, m.ConnRefused, m.BytesReceived, m.BytesSent,
		m.UpstreamConnectDuration, m.UpstreamConnectFailures, m.UpstreamHealthy,
		m.TLSHandshakes, m.TLSHandshakeTime,
		m.HTTPRequests, m.HTTPRequestDuration, m.HTTPRetries, m.HTTPRetriesExhausted,
		m.RedisCommandResults, m.RedisCommandDuration, m.RedisClients, m.RedisPins, m.RedisUpstreamConns, m.RedisUpstreamProbes,
		m.PGQueryResults, m.PGQueryDuration, m.PGTransactions, m.PGTransactionDuration, m.PGClients,
		m.PGPins, m.PGPrepared, m.PGCancels, m.PGUpstreamErrors, m.PGAuthQueries, m.PGTerminations, m.PoolAcquireWait,
		m.PolicyDecisions,
	} {
		v.DeletePartialMatch(l)
	}
	m.Pools.forgetListener(name)
}

// ForgetUpstreams deletes the upstream series of a listener for addresses
// that are no longer in keep (a reload changed its upstream addresses).
func (m *Metrics) ForgetUpstreams(listener string, keep []string) {
	kept := map[string]bool{}
	for _, a := range keep {
		kept[a] = true
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		return
	}
	stale := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != Namespace+"_upstream_healthy" {
			continue
		}
		for _, s := range mf.GetMetric() {
			var l, u string
			for _, lp := range s.GetLabel() {
				switch lp.GetName() {
				case "listener":
					l = lp.GetValue()
				case "upstream":
					u = lp.GetValue()
				}
			}
			if l == listener && !kept[u] {
				stale[u] = true
			}
		}
	}
	for u := range stale {
		m.UpstreamHealthy.DeleteLabelValues(listener, u)
		m.UpstreamConnectDuration.DeleteLabelValues(listener, u)
		m.UpstreamConnectFailures.DeleteLabelValues(listener, u)
	}
}
