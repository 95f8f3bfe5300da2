package main

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/outrigger/outrigger/metrics"
)

// The metrics the summary reads (declared in metrics/metrics.go).
var (
	metricAccepted = metrics.Namespace + "_listener_connections_accepted_total"
	metricBytesIn  = metrics.Namespace + "_listener_received_bytes_total"
	metricBytesOut = metrics.Namespace + "_listener_sent_bytes_total"
	metricConnect  = metrics.Namespace + "_upstream_connect_duration_seconds"
	metricConnFail = metrics.Namespace + "_upstream_connect_failures_total"
	metricReloads  = metrics.Namespace + "_config_reloads_total"
)

// listenerStats is what outrigger counted for one listener.
type listenerStats struct {
	Accepted        float64
	BytesIn         float64 // from clients
	BytesOut        float64 // to clients
	Connects        uint64  // upstream connects timed
	ConnectSeconds  float64 // their total time
	ConnectFailures float64
}

// MeanConnect is the mean upstream connect time, or 0 with no connects.
func (s listenerStats) MeanConnect() float64 {
	if s.Connects == 0 {
		return 0
	}
	return s.ConnectSeconds / float64(s.Connects)
}

// sidecarStats is the part of outrigger's metrics the summary shows.
type sidecarStats struct {
	Listeners map[string]*listenerStats
	Reloads   map[string]float64 // by result: success, rejected
}

// ListenerNames returns the listeners in name order.
func (s sidecarStats) ListenerNames() []string {
	names := make([]string, 0, len(s.Listeners))
	for n := range s.Listeners {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// gatherStats reads outrigger's registry, as /metrics would serve it.
func gatherStats(g prometheus.Gatherer) (sidecarStats, error) {
	st := sidecarStats{Listeners: map[string]*listenerStats{}, Reloads: map[string]float64{}}
	families, err := g.Gather()
	if err != nil {
		return st, fmt.Errorf("gather metrics: %w", err)
	}
	listener := func(m *dto.Metric) *listenerStats {
		name := label(m, "listener")
		if st.Listeners[name] == nil {
			st.Listeners[name] = &listenerStats{}
		}
		return st.Listeners[name]
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case metricAccepted:
				listener(m).Accepted += m.GetCounter().GetValue()
			case metricBytesIn:
				listener(m).BytesIn += m.GetCounter().GetValue()
			case metricBytesOut:
				listener(m).BytesOut += m.GetCounter().GetValue()
			case metricConnect: // summed over the listener's upstream addresses
				l := listener(m)
				l.Connects += m.GetHistogram().GetSampleCount()
				l.ConnectSeconds += m.GetHistogram().GetSampleSum()
			case metricConnFail:
				listener(m).ConnectFailures += m.GetCounter().GetValue()
			case metricReloads:
				st.Reloads[label(m, "result")] += m.GetCounter().GetValue()
			}
		}
	}
	return st, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
