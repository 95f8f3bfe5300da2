package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestPromlint lints every metric registered, so a badly named or unhelped
// metric fails the build.
func TestPromlint(t *testing.T) {
	m := New(BuildInfo{Version: "test", Commit: "none"})
	// Touch every vector so it appears in the gathered output.
	m.ConnAccepted.WithLabelValues("l", "tcp").Inc()
	m.ConnActive.WithLabelValues("l", "tcp").Inc()
	m.ConnClosed.WithLabelValues("l", "tcp").Inc()
	m.ConnRefused.WithLabelValues("l", "tcp", "draining").Inc()
	m.BytesReceived.WithLabelValues("l", "tcp").Inc()
	m.BytesSent.WithLabelValues("l", "tcp").Inc()
	m.UpstreamConnectDuration.WithLabelValues("l", "a").Observe(0.001)
	m.UpstreamConnectFailures.WithLabelValues("l", "a").Inc()
	m.UpstreamHealthy.WithLabelValues("l", "a").Set(1)
	m.TLSHandshakes.WithLabelValues("l", "ok", "none").Inc()
	m.TLSHandshakeTime.WithLabelValues("l").Observe(0.001)
	m.TLSCertExpiry.WithLabelValues("p", "cert").Set(1)
	m.TLSReloads.WithLabelValues("p", "success").Inc()
	m.ConfigReloads.WithLabelValues("success").Inc()
	m.ConfigReloadApply.Observe(0.01)
	m.ConfigPushLatency.Observe(0.01)
	m.ConfigHash.WithLabelValues("abc").Set(1)
	m.HTTPRequests.WithLabelValues("l", "/", "2xx").Inc()
	m.HTTPRequestDuration.WithLabelValues("l", "/").Observe(0.01)
	m.HTTPRetries.WithLabelValues("l", "/", "connect").Inc()
	m.HTTPRetriesExhausted.WithLabelValues("l", "/").Inc()

	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	var ours int
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), Namespace+"_") {
			ours++
		}
	}
	if ours < 20 {
		t.Errorf("gathered %d outrigger_ metrics, want every declared one (>= 20)", ours)
	}
}

// TestPoolCollectorOwner: a retired handler's Delete leaves the pool its
// successor registered under the same names.
func TestPoolCollectorOwner(t *testing.T) {
	m := New(BuildInfo{})
	old, cur := new(int), new(int)
	m.Pools.Set("l", "db/u", old, func() PoolSnapshot { return PoolSnapshot{Size: 1} })
	m.Pools.Set("l", "db/u", cur, func() PoolSnapshot { return PoolSnapshot{Size: 2} })
	m.Pools.Delete("l", "db/u", old)
	if got := testutil.CollectAndCount(m.Pools); got != 5 {
		t.Fatalf("after the old owner's Delete: %d series, want 5", got)
	}
	m.Pools.Delete("l", "db/u", cur)
	if got := testutil.CollectAndCount(m.Pools); got != 0 {
		t.Fatalf("after the owner's Delete: %d series, want 0", got)
	}
}
