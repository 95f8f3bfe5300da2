package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// InFlightCollector reports, at scrape time, how many requests each
// registered listener has sent upstream and not yet had answered
// (outrigger_redis_in_flight_commands), so the hot path keeps no gauge
// current.
type InFlightCollector struct {
	desc *prometheus.Desc

	mu sync.Mutex
	// sources are the depth functions by listener and owner: while a
	// reload drains the handler it replaced, both count.
	sources map[string]map[any]func() int
}

func newInFlightCollector() *InFlightCollector {
	return &InFlightCollector{
		desc: prometheus.NewDesc(Namespace+"_redis_in_flight_commands",
			"Commands written to a redis listener's shared upstream connections and not yet answered (the pipeline depth), at scrape time.",
			[]string{"listener"}, nil),
		sources: map[string]map[any]func() int{},
	}
}

// Set registers owner's depth function for listener (a handler; the
// listener's value is the sum over its owners).
func (c *InFlightCollector) Set(listener string, owner any, depth func() int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sources[listener] == nil {
		c.sources[listener] = map[any]func() int{}
	}
	c.sources[listener][owner] = depth
}

// Delete forgets owner's depth function for listener.
func (c *InFlightCollector) Delete(listener string, owner any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sources[listener], owner)
	if len(c.sources[listener]) == 0 {
		delete(c.sources, listener)
	}
}

// Describe implements prometheus.Collector.
func (c *InFlightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *InFlightCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for l, owners := range c.sources {
		n := 0
		for _, depth := range owners {
			n += depth()
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), l)
	}
}
