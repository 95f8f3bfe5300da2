package pool

import (
	"context"
	"testing"
	"time"
)

// benchConfig is a realistic Postgres pool: every timer on, so Release reads
// the clock.
func benchConfig(size int) Config {
	return Config{
		Name: "bench", Size: size, AcquireTimeout: 5 * time.Second,
		IdleTimeout: 10 * time.Minute, MaxLifetime: time.Hour, HealthCheckAfter: time.Second,
	}
}

func benchPool(b *testing.B, size int, check bool) *Pool[*fakeConn] {
	return benchPoolConfig(b, benchConfig(size), check)
}

func benchPoolConfig(b *testing.B, cfg Config, check bool) *Pool[*fakeConn] {
	size := cfg.Size
	p, _ := newTestPool(b, cfg, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		if !check {
			h.Check = nil
		}
	})
	var ls []*Lease[*fakeConn]
	for range size { // warm: every connection dialed
		ls = append(ls, mustAcquire(b, p))
	}
	for _, l := range ls {
		l.Release()
	}
	return p
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cfg   Config
		check bool
	}{
		// bare: no timeouts, no check: the clock is never read.
		{"bare", Config{Name: "bench", Size: 4}, false},
		// realistic config: Acquire reads the clock for MaxLifetime, Release
		// for idleSince.
		{"timers", benchConfig(4), false},
		{"timers+check", benchConfig(4), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := benchPoolConfig(b, bc.cfg, bc.check)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				l.Release()
			}
		})
	}
}

func BenchmarkAcquireReleaseContended(b *testing.B) {
	p := benchPool(b, 4, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // 8*GOMAXPROCS goroutines on 4 connections
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			l.Release()
		}
	})
	s := p.Stats()
	b.ReportMetric(float64(s.Waits)/float64(s.Acquired), "waits/op")
}
