package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolSnapshot is what a pool reports at scrape time.
type PoolSnapshot struct {
	Size, Idle, InUse, Dialing, Waiting int
}

// PoolCollector reports the connection gauges of every registered pool at
// scrape time, so a pool's numbers are read once per scrape instead of
// being kept current on every acquire and release.
type PoolCollector struct {
	conns, waiting, size *prometheus.Desc

	mu    sync.Mutex
	pools map[[2]string]poolSource
}

type poolSource struct {
	owner any
	snap  func() PoolSnapshot
}

func newPoolCollector() *PoolCollector {
	return &PoolCollector{
		conns: prometheus.NewDesc(Namespace+"_pool_connections",
			"Upstream connections of a pool by state: idle, in_use, dialing.", []string{"listener", "pool", "state"}, nil),
		waiting: prometheus.NewDesc(Namespace+"_pool_waiting_clients",
			"Clients queued for a connection of a pool.", []string{"listener", "pool"}, nil),
		size: prometheus.NewDesc(Namespace+"_pool_size",
			"The most connections a pool may hold (pool.size).", []string{"listener", "pool"}, nil),
		pools: map[[2]string]poolSource{},
	}
}

// Set registers (or replaces) the pool named pool of listener. owner
// identifies who registered it (a handler), for Delete.
func (c *PoolCollector) Set(listener, pool string, owner any, snap func() PoolSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pools[[2]string{listener, pool}] = poolSource{owner, snap}
}

// Delete forgets a pool if owner still holds it: a handler retired by a
// reload must not remove the pool its successor registered under the same
// names.
func (c *PoolCollector) Delete(listener, pool string, owner any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{listener, pool}
	if c.pools[k].owner == owner {
		delete(c.pools, k)
	}
}

func (c *PoolCollector) forgetListener(listener string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.pools {
		if k[0] == listener {
			delete(c.pools, k)
		}
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.waiting
	ch <- c.size
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	pools := make(map[[2]string]func() PoolSnapshot, len(c.pools))
	for k, v := range c.pools {
		pools[k] = v.snap
	}
	c.mu.Unlock()
	for k, snap := range pools {
		s := snap()
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.Idle), k[0], k[1], "idle")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.InUse), k[0], k[1], "in_use")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.Dialing), k[0], k[1], "dialing")
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.Waiting), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size), k[0], k[1])
	}
}
