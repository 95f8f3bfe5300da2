package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := Median(in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Fatalf("Median changed its input: %v", in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	lo, hi := MinMax([]float64{3, 1, 2})
	if lo != 1 || hi != 3 {
		t.Errorf("MinMax = %v, %v", lo, hi)
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{"p99 of 1..100", hundred, 99, 99},
		{"p50 of 1..100", hundred, 50, 50},
		{"p100 is the max", hundred, 100, 100},
		{"p99 of one value", []float64{7}, 99, 7},
		{"p99 of ten values is the max", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"p90 of ten values", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := Percentile(in, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if !math.IsNaN(Percentile(nil, 99)) || !math.IsNaN(Percentile([]float64{1}, 0)) {
		t.Error("want NaN for no values or p <= 0")
	}
}

// sampleResults is a small run: two Postgres cases, one Redis case, three
// rounds, with an unavailable contestant, a failing one and a partial one,
// and Outrigger with its access log on for Redis.
func sampleResults() *Results {
	r := &Results{
		Mode: "quick", Rounds: 3, Command: "make bench-quick",
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Finished: time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC),
		Machine:  Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.1", OS: "Debian", Go: "go1.26", LoadAvg: "0.10 0.20 0.30", Versions: map[string]string{"PgBouncer": "PgBouncer 1.18.0"}},
		Cases: []CaseInfo{
			{ID: "pg-select-c64", Protocol: Postgres, Title: "`-S` simple, 64 clients", Command: "pgbench -S -c 64 -j 2", Clients: 64},
			{ID: "pg-connect-select-c16", Protocol: Postgres, Title: "`-C -S`, 16 clients", Command: "pgbench -C -S -c 16 -j 2", Clients: 16},
			{ID: "redis-get-c50", Protocol: Redis, Title: "GET, 50 clients", Command: "redis-benchmark -t set,get -c 50", Clients: 50},
		},
		Contestants: []ContestantInfo{
			{ID: Direct, Name: "direct"}, {ID: HAProxy, Name: "HAProxy"}, {ID: PgBouncer, Name: "PgBouncer"},
			{ID: Twemproxy, Name: "twemproxy"}, {ID: Outrigger, Name: "Outrigger"},
			{ID: OutriggerLogged, Name: "Outrigger (access log 1 %)"},
		},
		// The access-log variant runs for Redis only here, so the
		// Postgres tables show the lineup without it.
		Lineup: map[string][]string{
			Postgres: {Direct, HAProxy, PgBouncer, Outrigger},
			Redis:    {Direct, HAProxy, Twemproxy, Outrigger, OutriggerLogged},
		},
		Peer: map[string]string{Postgres: PgBouncer, Redis: Twemproxy},
	}
	r.SetUnavailable(Postgres, Outrigger, NA{Short: "not built", Detail: "this build of Outrigger has no postgres listener"})
	add := func(c, who string, ops ...float64) {
		for i, v := range ops {
			run := Run{Round: i + 1, Case: c, Contestant: who, Seconds: 3}
			if v < 0 {
				run.Error = "pgbench: run aborted"
			} else {
				run.OK, run.OpsPerSec, run.LatAvgMS, run.LatP99MS = true, v, 1000*64/v, 2000*64/v
				run.Ops = int64(3 * v)
			}
			if who != Direct {
				// 6 s of the proxy's CPU per run: 2e6/v µs per op.
				rs := []Run{run}
				ShareCPU(rs, 6)
				run = rs[0]
			}
			r.Runs = append(r.Runs, run)
		}
	}
	add("pg-select-c64", Direct, 40000, 42000, 41000)
	add("pg-select-c64", HAProxy, 30000, 31000, 29000)
	add("pg-select-c64", PgBouncer, 35000, -1, 36000)
	add("pg-connect-select-c16", Direct, 200, 210, 220)
	add("pg-connect-select-c16", HAProxy, -1, -1, -1)
	add("pg-connect-select-c16", PgBouncer, 500, 520, 510)
	add("redis-get-c50", Direct, 150000, 160000, 155000)
	add("redis-get-c50", HAProxy, 90000, 95000, 92000)
	add("redis-get-c50", Twemproxy, 100000, 98000, 99000)
	add("redis-get-c50", Outrigger, 120000, 125000, 118000)
	add("redis-get-c50", OutriggerLogged, 118000, 116000, 117000)
	for _, m := range []Idle{
		{Protocol: Postgres, Contestant: PgBouncer, Clients: 1000, BaseKiB: 8000, RSSKiB: 9000, PerClientKiB: 1},
		{Protocol: Postgres, Contestant: PgBouncer, Clients: 5000, BaseKiB: 8000, RSSKiB: 12500, PerClientKiB: 0.9},
		{Protocol: Postgres, Contestant: HAProxy, Clients: 1000, Error: "client 193 of 1000: FATAL: too many clients"},
		{Protocol: Postgres, Contestant: HAProxy, Clients: 5000, Error: "client 193 of 1000: FATAL: too many clients"},
		{Protocol: Redis, Contestant: Twemproxy, Clients: 1000, BaseKiB: 2400, RSSKiB: 2800, PerClientKiB: 0.4},
		{Protocol: Redis, Contestant: Twemproxy, Clients: 5000, BaseKiB: 2400, RSSKiB: 4400, PerClientKiB: 0.4},
		{Protocol: Redis, Contestant: Outrigger, Clients: 1000, BaseKiB: 16000, RSSKiB: 19000, PerClientKiB: 3},
		{Protocol: Redis, Contestant: Outrigger, Clients: 5000, BaseKiB: 16000, RSSKiB: 31000, PerClientKiB: 3},
	} {
		r.Idle = append(r.Idle, m)
	}
	return r
}

func TestSummarize(t *testing.T) {
	s := Summarize(sampleResults())
	if len(s.Rows) != 3 {
		t.Fatalf("%d rows, want 3", len(s.Rows))
	}
	tests := []struct {
		name       string
		c, who     string
		wantValid  bool
		median     float64
		lo, hi     float64
		wantNA     string
		wantNoteIn string
	}{
		{name: "all rounds", c: "pg-select-c64", who: Direct, wantValid: true, median: 41000, lo: 40000, hi: 42000},
		{name: "one round failed", c: "pg-select-c64", who: PgBouncer, wantValid: true, median: 35500, lo: 35000, hi: 36000,
			wantNoteIn: "1 of 3 runs failed (pgbench: run aborted)"},
		{name: "every round failed", c: "pg-connect-select-c16", who: HAProxy, wantNA: "failed"},
		{name: "unavailable contestant", c: "pg-select-c64", who: Outrigger, wantNA: "not built"},
		{name: "redis", c: "redis-get-c50", who: Outrigger, wantValid: true, median: 120000, lo: 118000, hi: 125000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := s.Row(tt.c).Stat(tt.who)
			if st == nil {
				t.Fatal("no stat")
			}
			if st.Valid() != tt.wantValid {
				t.Fatalf("valid %v, want %v (%+v)", st.Valid(), tt.wantValid, st)
			}
			if tt.wantNA != "" && (st.NA == nil || st.NA.Short != tt.wantNA) {
				t.Fatalf("NA %+v, want %q", st.NA, tt.wantNA)
			}
			if tt.wantValid && (st.Median != tt.median || st.Min != tt.lo || st.Max != tt.hi) {
				t.Fatalf("median %v min %v max %v, want %v %v %v", st.Median, st.Min, st.Max, tt.median, tt.lo, tt.hi)
			}
			if !strings.Contains(st.Note, tt.wantNoteIn) {
				t.Fatalf("note %q, want %q in it", st.Note, tt.wantNoteIn)
			}
		})
	}
	// Latency medians: avg = 64000/ops for each round.
	st := s.Row("pg-select-c64").Stat(Direct)
	if want := 64000.0 / 41000; math.Abs(st.LatAvgMS-want) > 1e-9 {
		t.Errorf("avg latency %v, want %v", st.LatAvgMS, want)
	}
}
