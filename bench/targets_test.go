package bench

import (
	"strings"
	"testing"
)

func TestEvaluateRatio(t *testing.T) {
	r := sampleResults()
	// Outrigger's Postgres side is "not built" in the sample; give it
	// numbers for the cases that need them.
	withPG := func() *Results {
		r := sampleResults()
		delete(r.Unavailable, Postgres+"/"+Outrigger)
		r.Runs = append(r.Runs,
			Run{Round: 1, Case: "pg-select-c64", Contestant: Outrigger, OK: true, OpsPerSec: 34000},
			Run{Round: 1, Case: "pg-connect-select-c16", Contestant: Outrigger, OK: true, OpsPerSec: 450},
		)
		return r
	}
	tests := []struct {
		name       string
		r          *Results
		target     RatioTarget
		want       string
		wantDetail []string
	}{
		{name: "met against the peer", r: r,
			target: RatioTarget{Cases: []string{"redis-get-c50"}, Of: Outrigger, To: Peer, Min: 1.0},
			want:   Met, wantDetail: []string{"GET, 50 clients 1.21×", "120,000 vs 99,000 ops/s"}},
		{name: "not met against direct", r: r,
			target: RatioTarget{Cases: []string{"redis-get-c50"}, Of: Outrigger, To: Direct, Min: 0.85},
			want:   NotMet, wantDetail: []string{"0.77× ✗"}},
		{name: "n/a when Outrigger is not built", r: r,
			target: RatioTarget{Cases: []string{"pg-select-c64"}, Of: Outrigger, To: Peer, Min: 1.0},
			want:   TargetNA, wantDetail: []string{"Outrigger n/a (not built)"}},
		{name: "n/a when the case did not run", r: r,
			target: RatioTarget{Cases: []string{"pg-tpcb-c32"}, Of: Outrigger, To: Peer, Min: 1.0},
			want:   TargetNA, wantDetail: []string{"pg-tpcb-c32: not in this run"}},
		{name: "short of the peer", r: withPG(),
			target: RatioTarget{Cases: []string{"pg-select-c64"}, Of: Outrigger, To: Peer, Min: 1.0},
			want:   NotMet, wantDetail: []string{"0.96× ✗"}},
		{name: "connection storm against direct", r: withPG(),
			target: RatioTarget{Cases: []string{"pg-connect-select-c16"}, Of: Outrigger, To: Direct, Min: 2.0},
			want:   Met, wantDetail: []string{"2.14×"}},
		{name: "the reference failed, Outrigger ran", r: withPG(),
			target: RatioTarget{Cases: []string{"pg-connect-select-c16"}, Of: Outrigger, To: HAProxy, Min: 1.0},
			want:   Met, wantDetail: []string{"HAProxy n/a (failed)"}},
		{name: "Outrigger failed, the reference ran", r: r,
			target: RatioTarget{Cases: []string{"pg-connect-select-c16"}, Of: HAProxy, To: Direct, Min: 0.5},
			want:   NotMet, wantDetail: []string{"HAProxy failed (pgbench: run aborted) ✗"}},
		{name: "a case outside the contestant's lineup does not count", r: r,
			target: RatioTarget{Cases: []string{"redis-get-c50", "pg-select-c64"}, Of: PgBouncer, To: Direct, Min: 0.8},
			want:   Met, wantDetail: []string{"GET, 50 clients: not in the lineup", "0.87×"}},
		{name: "one case short makes the whole target not met", r: r,
			target: RatioTarget{Cases: []string{"pg-select-c64", "pg-connect-select-c16"}, Of: HAProxy, To: Direct, Min: 0.7},
			want:   NotMet, wantDetail: []string{"0.73×", "HAProxy failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trs := Evaluate([]Target{{Issue: 1, Text: "x", Ratio: &tt.target}}, tt.r, Summarize(tt.r))
			if trs[0].Status != tt.want {
				t.Errorf("status %q, want %q (%s)", trs[0].Status, tt.want, trs[0].Detail)
			}
			for _, d := range tt.wantDetail {
				if !strings.Contains(trs[0].Detail, d) {
					t.Errorf("detail %q lacks %q", trs[0].Detail, d)
				}
			}
		})
	}
}

func TestEvaluateIdle(t *testing.T) {
	r := sampleResults()
	tests := []struct {
		name   string
		target IdleTarget
		want   string
		detail string
	}{
		{"met", IdleTarget{Protocol: Redis, Contestant: Outrigger, Clients: 5000, MaxKiB: 4}, Met, "3.00 KiB per idle client"},
		{"not met", IdleTarget{Protocol: Redis, Contestant: Outrigger, Clients: 5000, MaxKiB: 2}, NotMet, "3.00 KiB"},
		{"unavailable", IdleTarget{Protocol: Postgres, Contestant: Outrigger, Clients: 5000, MaxKiB: 4}, TargetNA, "not built"},
		{"measurement failed", IdleTarget{Protocol: Postgres, Contestant: HAProxy, Clients: 5000, MaxKiB: 4}, TargetNA, "too many clients"},
		{"not measured", IdleTarget{Protocol: Redis, Contestant: Outrigger, Clients: 10000, MaxKiB: 4}, TargetNA, "not measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trs := Evaluate([]Target{{Issue: 7, Text: "x", Idle: &tt.target}}, r, Summarize(r))
			if trs[0].Status != tt.want || !strings.Contains(trs[0].Detail, tt.detail) {
				t.Errorf("got %q %q, want %q with %q", trs[0].Status, trs[0].Detail, tt.want, tt.detail)
			}
		})
	}
}

func TestDefaultTargetsCoverIssues(t *testing.T) {
	ts := DefaultTargets([]string{"redis-set-c50", "redis-get-c50"})
	issues := map[int]int{}
	for _, tg := range ts {
		issues[tg.Issue]++
		if (tg.Ratio == nil) == (tg.Idle == nil) {
			t.Errorf("target %q must check exactly one thing", tg.Text)
		}
	}
	if issues[3] != 5 || issues[4] != 3 || issues[7] != 2 {
		t.Errorf("targets per issue %v, want 3:5 4:3 7:2", issues)
	}
}

func TestGroupThousandsAndFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{groupThousands(0), "0"},
		{groupThousands(999), "999"},
		{groupThousands(1000), "1,000"},
		{groupThousands(1234567), "1,234,567"},
		{groupThousands(-1234), "-1,234"},
		{fmtMS(0.2034), "0.203"},
		{fmtMS(5.691), "5.69"},
		{fmtMS(71.812), "71.8"},
		{fmtMS(1234.6), "1235"},
		{fmtMS(0), "–"},
		{compact(40000), "40k"},
		{compact(1500000), "1.5M"},
		{compact(0.25), "0.25"},
		{compact(0), "0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
