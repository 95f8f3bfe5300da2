package policy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/pg/classify"
)

// benchPolicy has 20 rules; the benchmark session is governed by the last,
// so it also shows that resolving once per session keeps the number of
// rules off the per-check path.
func benchPolicy(limits ...config.RateLimit) config.Policy {
	p := config.Policy{Default: "deny", RateLimits: limits}
	for i := range 19 {
		p.Rules = append(p.Rules, config.Rule{
			Name:     fmt.Sprintf("r%d", i),
			When:     config.Match{Principal: fmt.Sprintf("spiffe://example.org/ns/prod/sa/svc%d", i)},
			Postgres: &config.PostgresRule{Statements: []string{"select", "insert", "update", "delete"}},
			Redis:    &config.RedisRule{Categories: []string{"@read", "@write"}, Keys: []string{fmt.Sprintf("svc%d:*", i)}},
		})
	}
	p.Rules = append(p.Rules, config.Rule{
		Name: "reporting",
		When: config.Match{Principal: "spiffe://example.org/ns/prod/sa/reporting", Source: "10.0.0.0/8"},
		Postgres: &config.PostgresRule{
			Statements: []string{"select"},
			Tables:     []string{"public.orders", "public.customers"},
			Functions:  []string{"count", "sum", "lower"},
		},
		Redis: &config.RedisRule{Categories: []string{"@read"}, Keys: []string{"report:*", "cache:{user}:*"}},
	})
	return p
}

var benchPrincipal = Principal{
	Identity: "spiffe://example.org/ns/prod/sa/reporting",
	User:     "reporting",
	Database: "app",
	Listener: "appdb",
	Source:   netip.MustParseAddr("10.1.2.3"),
}

func benchSession(b *testing.B, opts []Option, limits ...config.RateLimit) *Session {
	b.Helper()
	eng, err := Compile(benchPolicy(limits...), opts...)
	if err != nil {
		b.Fatal(err)
	}
	s := eng.Session(benchPrincipal)
	if s.RuleName() != "reporting" {
		b.Fatalf("rule = %s", s.RuleName())
	}
	return s
}

func BenchmarkCheckRedisAllowed(b *testing.B) {
	for _, m := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"metrics", []Option{WithMetrics(metrics.New(metrics.BuildInfo{}))}}} {
		b.Run(m.name, func(b *testing.B) {
			s := benchSession(b, m.opts)
			cmd := RedisCommand{
				Name:       "mget",
				Categories: []string{"@read", "@string", "@fast"},
				Keys:       [][]byte{[]byte("report:2024:q1"), []byte("report:2024:q2"), []byte("cache:{user}:42")},
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := s.CheckRedis(ctx, cmd); d.Action != Allow {
					b.Fatal(d)
				}
			}
		})
	}
}

func BenchmarkCheckPostgresAllowed(b *testing.B) {
	for _, m := range []struct {
		name string
		opts []Option
	}{{"plain", nil}, {"metrics", []Option{WithMetrics(metrics.New(metrics.BuildInfo{}))}}} {
		b.Run(m.name, func(b *testing.B) {
			s := benchSession(b, m.opts)
			cache := classify.NewCache(16)
			const sql = "SELECT c.name, count(*), sum(o.total) FROM orders o JOIN public.customers c ON c.id = o.customer_id WHERE lower(c.region) = $1 GROUP BY c.name"
			cache.Classify(sql)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := s.CheckPostgres(ctx, cache.Classify(sql)); d.Action != Allow {
					b.Fatal(d)
				}
			}
		})
	}
}

// BenchmarkCheckWithRateLimit is an allowed check that takes a token from
// a per-principal bucket that never runs dry.
func BenchmarkCheckWithRateLimit(b *testing.B) {
	s := benchSession(b, nil, config.RateLimit{Name: "lots", Rate: 1e12, Burst: 1 << 30, Per: "principal", OnLimit: "reject"})
	cmd := RedisCommand{Name: "get", Categories: []string{"@read", "@string", "@fast"}, Keys: [][]byte{[]byte("report:1")}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := s.CheckRedis(ctx, cmd); d.Action != Allow {
			b.Fatal(d)
		}
	}
}

// BenchmarkRateLimited is a check refused by an empty bucket (the clock
// stands still, so it never refills).
func BenchmarkRateLimited(b *testing.B) {
	for _, onLimit := range []string{"reject", "delay"} {
		b.Run(onLimit, func(b *testing.B) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			s := benchSession(b, []Option{WithClock(clk)}, config.RateLimit{Name: "tight", Rate: 1, Burst: 1, Per: "client", OnLimit: onLimit, MaxDelay: time.Millisecond})
			cmd := RedisCommand{Name: "get", Categories: []string{"@read", "@string", "@fast"}, Keys: [][]byte{[]byte("report:1")}}
			ctx := context.Background()
			s.CheckRedis(ctx, cmd) // empties the bucket
			b.ReportAllocs()
			for b.Loop() {
				if d := s.CheckRedis(ctx, cmd); d.Action != RateLimited {
					b.Fatal(d)
				}
			}
		})
	}
}
