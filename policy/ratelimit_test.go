package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

var get = RedisCommand{Name: "get", Categories: catGet, Keys: keys("k")}

func limitPolicy(limits ...config.RateLimit) config.Policy {
	return config.Policy{
		Default:    "allow",
		Rules:      []config.Rule{{Name: "app", When: config.Match{User: "app*"}, Postgres: &config.PostgresRule{}, Redis: &config.RedisRule{}}},
		RateLimits: limits,
	}
}

func compileT(t testing.TB, p config.Policy, opts ...Option) *Engine {
	t.Helper()
	eng, err := Compile(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// drain runs checks until one is refused, and returns how many passed.
func drain(t testing.TB, s *Session) int {
	t.Helper()
	for n := 0; n < 1000; n++ {
		if d := s.CheckRedis(bg, get); d.Action == RateLimited {
			return n
		}
	}
	t.Fatal("never rate limited")
	return 0
}

func TestRateLimitKeying(t *testing.T) {
	a := Principal{Identity: "spiffe://td/a", User: "app", Listener: "l1", Source: netip.MustParseAddr("10.0.0.1")}
	sameIdentity := Principal{Identity: "spiffe://td/a", User: "app2", Listener: "l2"}
	sameUser := Principal{Identity: "spiffe://td/b", User: "app", Listener: "l1"}
	other := Principal{Identity: "spiffe://td/c", User: "app3", Listener: "l3"}
	tests := []struct {
		per string
		// whether a second session of each kind shares the first's bucket
		twin, sameIdentity, sameUser, other bool
	}{
		{"principal", true, true, false, false},
		{"user", true, false, true, false},
		{"client", false, false, false, false},
		{"rule", true, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.per, func(t *testing.T) {
			eng := compileT(t, limitPolicy(config.RateLimit{Name: "lim", Rate: 1, Burst: 3, Per: tt.per}), WithClock(newFakeClock()))
			if n := drain(t, eng.Session(a)); n != 3 {
				t.Fatalf("first session passed %d, want the burst, 3", n)
			}
			for name, c := range map[string]struct {
				p      Principal
				shared bool
			}{
				"twin":          {a, tt.twin},
				"same identity": {sameIdentity, tt.sameIdentity},
				"same user":     {sameUser, tt.sameUser},
				"other":         {other, tt.other},
			} {
				d := eng.Session(c.p).CheckRedis(bg, get)
				if shared := d.Action == RateLimited; shared != c.shared {
					t.Errorf("%s: decision %+v, want shared bucket = %v", name, d, c.shared)
				}
				if d.Action == RateLimited && (d.Rule != "lim" || d.Limit != "lim" || d.Message == "") {
					t.Errorf("%s: %+v", name, d)
				}
			}
		})
	}
}

func TestRateLimitReject(t *testing.T) {
	clk := newFakeClock()
	eng := compileT(t, limitPolicy(config.RateLimit{Name: "lim", Rate: 10, Burst: 2, Per: "client", OnLimit: "reject"}), WithClock(clk))
	s := eng.Session(Principal{User: "app"})
	if n := drain(t, s); n != 2 {
		t.Fatalf("burst = %d", n)
	}
	d := s.CheckRedis(bg, get)
	if d.Action != RateLimited || d.Outcome() != "rate_limited" || d.RedisError() != "ERR rate limited lim" {
		t.Fatalf("%+v", d)
	}
	if code, _ := d.PostgresError(); code != CodeRateLimited {
		t.Errorf("code %s", code)
	}
	clk.Advance(99 * time.Millisecond)
	if d := s.CheckRedis(bg, get); d.Action != RateLimited {
		t.Errorf("before a token: %+v", d)
	}
	clk.Advance(time.Millisecond)
	if d := s.CheckRedis(bg, get); d.Action != Allow || d.Delay != 0 {
		t.Errorf("after 100ms: %+v", d)
	}
	clk.Advance(time.Hour)
	if n := drain(t, s); n != 2 {
		t.Errorf("after an hour: %d, want the burst only", n)
	}
}

func TestRateLimitDelay(t *testing.T) {
	clk := newFakeClock()
	eng := compileT(t, limitPolicy(config.RateLimit{Name: "slow", Rate: 10, Burst: 1, Per: "client", OnLimit: "delay", MaxDelay: 250 * time.Millisecond}), WithClock(clk))
	s := eng.Session(Principal{User: "app"})
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
		d := s.CheckRedis(bg, get)
		if d.Action != Allow || d.Delay != want || d.Rule != "app" {
			t.Fatalf("check %d: %+v, want delay %v", i, d, want)
		}
		if want > 0 && (d.Limit != "slow" || d.Outcome() != "delayed") {
			t.Errorf("check %d: %+v", i, d)
		}
	}
	// 300ms > max_delay: refused, and the refused reservation is given back.
	for range 3 {
		if d := s.CheckRedis(bg, get); d.Action != RateLimited || d.Rule != "slow" {
			t.Fatalf("beyond max_delay: %+v", d)
		}
	}
	clk.Advance(100 * time.Millisecond)
	if d := s.CheckRedis(bg, get); d.Action != Allow || d.Delay != 200*time.Millisecond {
		t.Errorf("after 100ms: %+v", d)
	}
}

// A delay that ends in a refusal by the rule is still a delay (the token is
// spent); the decision counts as a denial.
func TestRateLimitThenDeny(t *testing.T) {
	clk := newFakeClock()
	p := limitPolicy(config.RateLimit{Name: "slow", Rate: 10, Burst: 1, Per: "client", OnLimit: "delay", MaxDelay: time.Second})
	p.Rules[0].Redis = &config.RedisRule{Commands: []string{"get"}}
	eng := compileT(t, p, WithClock(clk))
	s := eng.Session(Principal{User: "app"})
	s.CheckRedis(bg, get)
	d := s.CheckRedis(bg, RedisCommand{Name: "del", Categories: catSet, Keys: keys("k")})
	if d.Action != Deny || d.Delay != 100*time.Millisecond || d.Outcome() != "deny" {
		t.Errorf("%+v", d)
	}
	// Denied requests spend tokens too.
	if d := s.CheckRedis(bg, get); d.Delay != 200*time.Millisecond {
		t.Errorf("%+v", d)
	}
}

// When one of several limits refuses, the others get their tokens back.
func TestRateLimitsTogether(t *testing.T) {
	clk := newFakeClock()
	eng := compileT(t, limitPolicy(
		config.RateLimit{Name: "shared", When: config.Match{Listener: "*"}, Rate: 1, Burst: 5, Per: "rule"},
		config.RateLimit{Name: "tight", When: config.Match{User: "app-tight"}, Rate: 1, Burst: 1, Per: "client"},
	), WithClock(clk))
	tight := eng.Session(Principal{User: "app-tight", Listener: "l"})
	if d := tight.CheckRedis(bg, get); d.Action != Allow {
		t.Fatalf("%+v", d)
	}
	for range 10 {
		if d := tight.CheckRedis(bg, get); d.Action != RateLimited || d.Rule != "tight" {
			t.Fatalf("%+v", d)
		}
	}
	loose := eng.Session(Principal{User: "app", Listener: "l"})
	if n := drain(t, loose); n != 4 {
		t.Errorf("shared bucket had %d tokens left, want 4 (5 - the one check that passed)", n)
	}
	if d := loose.CheckRedis(bg, get); d.Rule != "shared" {
		t.Errorf("%+v", d)
	}
}

func TestTransactionControlIsNotLimited(t *testing.T) {
	eng := compileT(t, limitPolicy(config.RateLimit{Name: "lim", Rate: 1, Burst: 1, Per: "client"}), WithClock(newFakeClock()))
	s := eng.Session(Principal{User: "app"})
	drain(t, s)
	for _, q := range []string{"ROLLBACK", "BEGIN", "COMMIT", "SAVEPOINT a"} {
		if d := sql(t, s, q); d.Action != Allow {
			t.Errorf("%s: %+v", q, d)
		}
	}
	if d := s.CheckRedis(bg, RedisCommand{Name: "exec"}); d.Action != Allow {
		t.Errorf("exec: %+v", d)
	}
	if d := sql(t, s, "SELECT 1"); d.Action != RateLimited {
		t.Errorf("SELECT: %+v", d)
	}
}

func TestBucketBound(t *testing.T) {
	eng := compileT(t, limitPolicy(config.RateLimit{Name: "lim", Rate: 1, Burst: 1, Per: "principal"}), WithClock(newFakeClock()), WithMaxBuckets(2))
	p := func(id string) Principal { return Principal{Identity: id, User: "app"} }
	drain(t, eng.Session(p("a")))
	drain(t, eng.Session(p("b")))
	if d := eng.Session(p("a")).CheckRedis(bg, get); d.Action != RateLimited {
		t.Fatalf("a kept its bucket: %+v", d)
	}
	drain(t, eng.Session(p("c"))) // evicts b, the least recently resolved
	if n := eng.limits[0].buckets.Len(); n != 2 {
		t.Errorf("%d buckets, bound 2", n)
	}
	if d := eng.Session(p("b")).CheckRedis(bg, get); d.Action != Allow {
		t.Errorf("b after eviction: %+v, want a fresh bucket", d)
	}
}

func TestReload(t *testing.T) {
	clk := newFakeClock()
	rw := limitPolicy(
		config.RateLimit{Name: "per-principal", Rate: 1, Burst: 2, Per: "principal"},
		config.RateLimit{Name: "per-client", Rate: 1, Burst: 2, Per: "client"},
	)
	rw.Rules[0].Postgres = &config.PostgresRule{Statements: []string{"select", "insert"}}
	old := compileT(t, rw, WithClock(clk))
	p := Principal{Identity: "spiffe://td/a", User: "app"}
	s := old.Session(p)
	if d := sql(t, s, "INSERT INTO t VALUES (1)"); d.Action != Allow {
		t.Fatal(d)
	}
	sql(t, s, "SELECT 1")

	ro := limitPolicy(
		config.RateLimit{Name: "per-principal", Rate: 1, Burst: 2, Per: "principal"},
		config.RateLimit{Name: "per-client", Rate: 1, Burst: 2, Per: "client"},
	)
	ro.Rules[0].Postgres = &config.PostgresRule{Statements: []string{"select"}}
	eng := compileT(t, ro, WithClock(clk), WithPrevious(old))
	if old.Rebind(s) != s {
		t.Error("Rebind to its own engine made a new session")
	}
	s2 := eng.Rebind(s)
	if s2 == s || s2.Engine() != eng || s2.Principal() != p {
		t.Fatal("not rebound")
	}
	// The new rule applies from the next statement...
	clk.Advance(10 * time.Second)
	if d := sql(t, s2, "INSERT INTO t VALUES (1)"); d.Action != Deny {
		t.Errorf("insert after reload to read-only: %+v", d)
	}
	// ...and both buckets went on (not refilled by the reload): drained
	// before the reload, refilled by 10s to the burst only.
	s3 := eng.Rebind(s)
	if n := drain(t, s3); n != 1 {
		t.Errorf("passed %d, want 1 (burst 2, one spent by the denied insert)", n)
	}
	// A changed limit starts over.
	changed := limitPolicy(config.RateLimit{Name: "per-principal", Rate: 1, Burst: 3, Per: "principal"})
	eng2 := compileT(t, changed, WithClock(clk), WithPrevious(eng))
	if n := drain(t, eng2.Rebind(s3)); n != 3 {
		t.Errorf("changed limit: %d, want a fresh burst of 3", n)
	}
	if eng.Rebind(nil) != nil {
		t.Error("Rebind(nil)")
	}
}

func TestMetrics(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	clk := newFakeClock()
	eng := load(t, `
policy:
  default: deny
  rules:
    - {name: ro, when: {user: ro}, postgres: {statements: [select]}}
    - {name: trial, when: {user: trial}, postgres: {statements: [select]}, mode: audit}
  rate_limits:
    - {name: slow, when: {user: ro}, rate: 10, burst: 1, per: client, on_limit: delay, max_delay: 150ms}
`, WithMetrics(m), WithClock(clk))
	ro := eng.Session(Principal{User: "ro", Listener: "appdb"})
	trial := eng.Session(Principal{User: "trial", Listener: "appdb"})
	nobody := eng.Session(Principal{User: "x", Listener: "other"})
	sql(t, ro, "SELECT 1")                            // allow
	sql(t, ro, "SELECT 1")                            // delayed 100ms
	sql(t, ro, "SELECT 1")                            // 200ms: rate_limited
	clk.Advance(time.Second)                          //
	sql(t, ro, "DELETE FROM t")                       // deny
	sql(t, ro, "BEGIN")                               // allow (transaction control)
	sql(t, trial, "DELETE FROM t")                    // audit_deny
	sql(t, trial, "SELECT 1")                         // allow
	sql(t, nobody, "SELECT 1")                        // deny by default
	nobody.CheckRedis(bg, RedisCommand{Name: "ping"}) // allow by default
	for _, c := range []struct {
		listener, rule, decision string
		want                     float64
	}{
		{"appdb", "ro", "allow", 2},
		{"appdb", "slow", "delayed", 1},
		{"appdb", "slow", "rate_limited", 1},
		{"appdb", "ro", "deny", 1},
		{"appdb", "trial", "audit_deny", 1},
		{"appdb", "trial", "allow", 1},
		{"other", "default", "deny", 1},
		{"other", "default", "allow", 1},
	} {
		if got := testutil.ToFloat64(m.PolicyDecisions.WithLabelValues(c.listener, c.rule, c.decision)); got != c.want {
			t.Errorf("%s/%s/%s = %v, want %v", c.listener, c.rule, c.decision, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.PolicyDecisions); n != 8 {
		t.Errorf("%d series, want 8 (only the decisions each rule can make)", n)
	}
	// The engine without metrics counts nothing and needs nothing.
	if e := compileT(t, config.Policy{}); e.counters != nil {
		t.Error("counters without WithMetrics")
	}
}

// TestConcurrent runs checks, session resolution and reloads at once; run
// it with -race. With the clock standing still, sessions that share a
// per-principal bucket get exactly its burst between them.
func TestConcurrent(t *testing.T) {
	clk := newFakeClock()
	pol := limitPolicy(
		config.RateLimit{Name: "pp", Rate: 1, Burst: 500, Per: "principal"},
		config.RateLimit{Name: "pc", Rate: 1, Burst: 1 << 20, Per: "client", OnLimit: "delay", MaxDelay: time.Second},
	)
	pol.Rules[0].Postgres = &config.PostgresRule{Statements: []string{"select"}, Tables: []string{"public.*"}}
	pol.Rules[0].Redis = &config.RedisRule{Categories: []string{"@read"}, Keys: []string{"k*"}}
	eng := compileT(t, pol, WithClock(clk), WithMetrics(metrics.New(metrics.BuildInfo{})))
	var live atomic.Pointer[Engine]
	live.Store(eng)
	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	shared := eng.Session(Principal{Identity: "spiffe://td/shared", User: "app"})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := eng.Session(Principal{Identity: "spiffe://td/shared", User: "app", Listener: fmt.Sprint("l", g)})
			for i := range 200 {
				s := own
				if i%2 == 0 {
					s = shared
				}
				var d Decision
				if i%3 == 0 {
					d = sql(t, s, "SELECT * FROM orders")
				} else {
					d = s.CheckRedis(bg, get)
				}
				switch d.Action {
				case Allow:
					allowed.Add(1)
				case RateLimited:
					limited.Add(1)
				default:
					t.Errorf("%+v", d)
				}
			}
		}()
	}
	// Reloads with the same config meanwhile: sessions rebound to them keep
	// the same buckets.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			next := compileT(t, pol, WithClock(clk), WithPrevious(live.Load()))
			live.Store(next)
			s := next.Rebind(shared)
			if d := s.CheckRedis(bg, RedisCommand{Name: "ping"}); d.Action != Allow {
				t.Errorf("%+v", d)
			}
		}
	}()
	wg.Wait()
	if allowed.Load() != 500 || limited.Load() != 8*200-500 {
		t.Errorf("allowed %d, limited %d: want exactly the burst, 500, allowed", allowed.Load(), limited.Load())
	}
}
