package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/bench"
	"github.com/outrigger/outrigger/config"
)

// TestCasesAndTargetsAgree keeps the case list and the targets of issues 3,
// 4 and 7 in step: every case a target names exists, and row ids are unique.
func TestCasesAndTargetsAgree(t *testing.T) {
	var ids, redisRows []string
	for _, c := range allCases {
		for _, r := range c.rows() {
			if slices.Contains(ids, r.ID) {
				t.Errorf("row id %s twice", r.ID)
			}
			ids = append(ids, r.ID)
			if r.Protocol == bench.Redis {
				redisRows = append(redisRows, r.ID)
			}
			if !c.matches(r.ID) || !c.matches(c.id) || !c.matches(c.protocol) {
				t.Errorf("case %s does not match its own names", c.id)
			}
		}
	}
	if len(ids) != 7+12 {
		t.Errorf("%d rows, want 7 Postgres and 12 Redis", len(ids))
	}
	for _, tg := range bench.DefaultTargets(redisRows) {
		if tg.Ratio == nil {
			continue
		}
		for _, id := range tg.Ratio.Cases {
			if !slices.Contains(ids, id) {
				t.Errorf("target %q names case %s, which the harness does not run", tg.Text, id)
			}
		}
	}
}

func TestCaseRows(t *testing.T) {
	tests := []struct {
		id        string
		wantRows  []string
		wantTitle string
		wantCmd   string
	}{
		{"pg-select-c64", []string{"pg-select-c64"}, "`-S` simple, 64 clients", "pgbench -S -c 64 -j 2"},
		{"pg-tpcb-c32", []string{"pg-tpcb-c32"}, "TPC-B, 32 clients", "pgbench -c 32 -j 2"},
		{"pg-prepared-select-c16", []string{"pg-prepared-select-c16"}, "`-M prepared -S`, 16 clients", "pgbench -M prepared -S -c 16 -j 2"},
		{"redis-c50-p16", []string{"redis-set-c50-p16", "redis-get-c50-p16"}, "SET, 50 clients, `-P 16`", "redis-benchmark -t set,get -c 50 -P 16 -r 100000"},
		{"redis-c1", []string{"redis-set-c1", "redis-get-c1"}, "SET, 1 client", "redis-benchmark -t set,get -c 1 -r 100000"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			i := slices.IndexFunc(allCases, func(c benchCase) bool { return c.id == tt.id })
			if i < 0 {
				t.Fatal("no such case")
			}
			rows := allCases[i].rows()
			var got []string
			for _, r := range rows {
				got = append(got, r.ID)
			}
			if !slices.Equal(got, tt.wantRows) || rows[0].Title != tt.wantTitle || rows[0].Command != tt.wantCmd {
				t.Errorf("rows %v %q %q, want %v %q %q", got, rows[0].Title, rows[0].Command, tt.wantRows, tt.wantTitle, tt.wantCmd)
			}
		})
	}
}

func TestRedisRequests(t *testing.T) {
	c := benchCase{clients: 5000, requests: 500_000}
	if got := c.redisRequests(0.1); got != 50_000 {
		t.Errorf("quick: %d", got)
	}
	if got := c.redisRequests(0.001); got != 50_000 {
		t.Errorf("tiny scale: %d, want 10 per client", got)
	}
	if d := (benchCase{minDuration: 10e9}).pgDuration(3e9); d != 10e9 {
		t.Errorf("pgDuration %v", d)
	}
}

// TestOutriggerConfigLoads checks the config the harness gives Outrigger
// against the real loader, so a schema change shows up here and not as a
// contestant that does not start.
func TestOutriggerConfigLoads(t *testing.T) {
	tests := []struct {
		name   string
		up     upstreams
		logged bool // the OutriggerLogged contestant
	}{
		{"both", upstreams{pg: "127.0.0.1:5432", redis: "127.0.0.1:6379"}, false},
		{"redis only", upstreams{redis: "127.0.0.1:6379"}, false},
		{"postgres only", upstreams{pg: "127.0.0.1:5432"}, false},
		{"access log on", upstreams{pg: "127.0.0.1:5432", redis: "127.0.0.1:6379"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accessLog := ""
			if tt.logged {
				accessLog = filepath.Join(t.TempDir(), "access.log") // the loader wants its folder to exist
			}
			y := outriggerConfig("127.0.0.1:19901", "127.0.0.1:16432", "127.0.0.1:16380", accessLog, tt.up)
			cfg, err := config.Load(config.Source{Data: []byte(y), Environ: []string{}})
			if err != nil {
				t.Fatalf("%v\n%s", err, y)
			}
			if (len(cfg.Postgres) == 1) != (tt.up.pg != "") || (len(cfg.Redis) == 1) != (tt.up.redis != "") {
				t.Fatalf("listeners: %d postgres, %d redis\n%s", len(cfg.Postgres), len(cfg.Redis), y)
			}
			if tt.up.pg != "" {
				p := cfg.Postgres[0]
				if p.Pool.Mode != "transaction" || p.Pool.Size != pgPoolSize || !strings.EqualFold(p.Auth.Method, "scram-sha-256") {
					t.Errorf("postgres listener %+v", p)
				}
			}
			if tt.up.redis != "" && cfg.Redis[0].Pool.Size != redisPoolSize {
				t.Errorf("redis pool size %d", cfg.Redis[0].Pool.Size)
			}
			al := cfg.AccessLog
			if al.Enabled != tt.logged {
				t.Fatalf("access log enabled %v, want %v\n%s", al.Enabled, tt.logged, y)
			}
			if al.Enabled && (al.Output != accessLog || al.SampleRate != 0.01 || al.SlowThreshold != time.Second) {
				t.Errorf("access log %+v, want output %s, sample_rate 0.01, slow_threshold 1s", al, accessLog)
			}
		})
	}
}

// TestDescribeRunCPU: the progress line carries the proxy's CPU per op
// when it was measured, and nothing about CPU for direct.
func TestDescribeRunCPU(t *testing.T) {
	r := bench.Run{OK: true, OpsPerSec: 28696, LatAvgMS: 2.23, LatP99MS: 6.311, CPUMicrosPerOp: 17.83}
	if got, want := describeRun(r), "       28696 ops/s  avg 2.230 ms  p99 6.311 ms  cpu 17.8 µs/op"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	r.CPUMicrosPerOp = 0
	if got := describeRun(r); strings.Contains(got, "cpu") {
		t.Errorf("direct's line mentions CPU: %q", got)
	}
	if (&instance{pid: 42}).cpuPID() != 0 {
		t.Error("direct (no process of the harness's) has a CPU pid")
	}
}
