// Package metrics declares every Prometheus metric Outrigger exports, in one
// place: name, help, labels and buckets. Everything else takes a *Metrics and
// updates its fields; nothing registers a metric of its own.
//
// Names follow one scheme: namespace `outrigger`, then a subsystem naming the
// concern (listener, upstream, tls, config, http; the frontends add pg, redis
// and pool), counters end in `_total`, durations are `_seconds` histograms,
// sizes `_bytes`. Label values are bounded by configuration (listener, route
// and profile names, upstream addresses, fixed result and reason words); never
// a query text, a key or a client address.
//
// TestLabelsAreBounded fails on any label name not known to be bounded.
// Request outcomes are the fixed Outcome set; error classes are mapped
// from a SQLSTATE (SQLStateClass) or a Redis error reply (RedisErrorClass)
// to constants of a fixed list, without allocating.
//
// On the hot path a frontend records through a recorder that resolved its
// series once (PGPoolRecorder per pool, RedisRecorder per listener):
// recording one request is an histogram observe and a counter add, with
// no allocation (BenchmarkRecordRequest).
//
// Each Metrics has its own registry, so several sidecars can run in one test
// process; the admin server serves it at /metrics.
package metrics
