package pg

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

// handlerMetrics are a listener's metrics, with the listener label bound.
type handlerMetrics struct {
	m        *metrics.Metrics
	listener string
	clients  prometheus.Gauge
	pins     *prometheus.CounterVec
	prepared struct{ hit, miss, eviction, retired, awaited prometheus.Counter }
	cancels  struct{ forwarded, queued, idle, unknown, timeout prometheus.Counter }
	upErrors *prometheus.CounterVec
	// Clients ended by Outrigger.
	txTimeouts, kills prometheus.Counter
}

func newHandlerMetrics(env sidecar.Env) *handlerMetrics {
	m := env.Metrics
	l := env.Name
	hm := &handlerMetrics{m: m, listener: l}
	if m == nil {
		m = metrics.New(metrics.BuildInfo{})
		hm.m = m
	}
	hm.clients = m.PGClients.WithLabelValues(l)
	hm.pins = m.PGPins.MustCurryWith(prometheus.Labels{"listener": l})
	hm.prepared.hit = m.PGPrepared.WithLabelValues(l, "hit")
	hm.prepared.miss = m.PGPrepared.WithLabelValues(l, "miss")
	hm.prepared.eviction = m.PGPrepared.WithLabelValues(l, "eviction")
	hm.prepared.retired = m.PGPrepared.WithLabelValues(l, "retired")
	hm.prepared.awaited = m.PGPrepared.WithLabelValues(l, "awaited")
	hm.cancels.forwarded = m.PGCancels.WithLabelValues(l, "forwarded")
	hm.cancels.idle = m.PGCancels.WithLabelValues(l, "idle")
	hm.cancels.queued = m.PGCancels.WithLabelValues(l, "queued")
	hm.cancels.unknown = m.PGCancels.WithLabelValues(l, "unknown")
	hm.cancels.timeout = m.PGCancels.WithLabelValues(l, "query_timeout")
	hm.upErrors = m.PGUpstreamErrors.MustCurryWith(prometheus.Labels{"listener": l})
	hm.txTimeouts = m.PGTerminations.WithLabelValues(l, "transaction_timeout")
	hm.kills = m.PGTerminations.WithLabelValues(l, "kill_client")
	return hm
}

// poolMetrics are one pool's series, looked up once when the pool is made
// so the hot path only adds and observes.
type poolMetrics struct {
	rec                *metrics.PGPoolRecorder // round trips: outcome and duration
	commits, rollbacks prometheus.Counter
	txDur              prometheus.Observer
	wait               prometheus.Observer

	// Totals for the admin console's SHOW STATS.
	queries, xacts, queryMicros, xactMicros atomic.Uint64
	clientParses, serverParses, binds       atomic.Uint64
}

func poolLabel(k poolKey) string { return k.database + "/" + k.user }

func (hm *handlerMetrics) pool(k poolKey) *poolMetrics {
	l, p := hm.listener, poolLabel(k)
	m := hm.m
	return &poolMetrics{
		rec:       m.PGPoolRecorder(l, p),
		commits:   m.PGTransactions.WithLabelValues(l, p, "commit"),
		rollbacks: m.PGTransactions.WithLabelValues(l, p, "rollback"),
		txDur:     m.PGTransactionDuration.WithLabelValues(l, p),
		wait:      m.PoolAcquireWait.WithLabelValues(l, p),
	}
}

func (pm *poolMetrics) acquireWait(d time.Duration) { pm.wait.Observe(d.Seconds()) }

func (hm *handlerMetrics) trackPool(sp *serverPool) {
	hm.m.Pools.Set(hm.listener, poolLabel(sp.key), hm, func() metrics.PoolSnapshot {
		s := sp.p.Stats()
		return metrics.PoolSnapshot{Size: s.Size, Idle: s.Idle, InUse: s.InUse, Dialing: s.Dialing, Waiting: s.Waiting}
	})
}

func (hm *handlerMetrics) forgetPool(sp *serverPool) {
	hm.m.Pools.Delete(hm.listener, poolLabel(sp.key), hm)
}
