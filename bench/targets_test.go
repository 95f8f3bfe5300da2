package bench

import (
	"slices"
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
	if issues[3] != 5 || issues[4] != 3 || issues[6] != 2 || issues[7] != 2 {
		t.Errorf("targets per issue %v, want 3:5 4:3 6:2 7:2", issues)
	}
}

// TestEvaluateAccessLogCost checks issue 6's targets: Outrigger with its
// access log on against plain Outrigger in the same run.
func TestEvaluateAccessLogCost(t *testing.T) {
	// logged gives both Outriggers Postgres numbers on pg-select-c64 (plain
	// first, then logged, per round; a negative value is a failed run).
	logged := func(plain, withLog []float64) *Results {
		r := sampleResults()
		delete(r.Unavailable, Postgres+"/"+Outrigger)
		r.Lineup[Postgres] = append(r.Lineup[Postgres], OutriggerLogged)
		add := func(who string, ops []float64) {
			for i, v := range ops {
				run := Run{Round: i + 1, Case: "pg-select-c64", Contestant: who}
				if v < 0 {
					run.Error = "pgbench: run aborted"
				} else {
					run.OK, run.OpsPerSec = true, v
				}
				r.Runs = append(r.Runs, run)
			}
		}
		add(Outrigger, plain)
		add(OutriggerLogged, withLog)
		return r
	}
	pgTarget := func() Target {
		for _, tg := range DefaultTargets([]string{"redis-get-c50"}) {
			if tg.Issue == 6 && tg.Ratio != nil && slices.Equal(tg.Ratio.Cases, []string{"pg-select-c64"}) {
				return tg
			}
		}
		t.Fatal("no issue 6 target on pg-select-c64")
		return Target{}
	}()
	tests := []struct {
		name       string
		r          *Results
		want       string
		wantDetail []string
	}{
		{name: "a 2 % cost is met", r: logged([]float64{30000, 31000, 29000}, []float64{29400, 29000, 30000}),
			want: Met, wantDetail: []string{"`-S` simple, 64 clients 0.980×, cost 2.0 %", "29,400 vs 30,000 ops/s"}},
		{name: "exactly 3 % is met", r: logged([]float64{30000}, []float64{29100}),
			want: Met, wantDetail: []string{"0.970×, cost 3.0 %"}},
		{name: "3.2 % is not met although it rounds to 0.97", r: logged([]float64{30000}, []float64{29040}),
			want: NotMet, wantDetail: []string{"0.968× ✗, cost 3.2 %"}},
		{name: "faster with the log is met", r: logged([]float64{30000}, []float64{30300}),
			want: Met, wantDetail: []string{"1.010×, cost -1.0 %"}},
		{name: "medians, not single rounds", r: logged([]float64{30000, 20000, 31000}, []float64{29500, 30500, 29800}),
			want: Met, wantDetail: []string{"0.993×", "29,800 vs 30,000 ops/s"}},
		{name: "n/a when the logged Outrigger is not in the lineup", r: withPGOnly(),
			want: TargetNA, wantDetail: []string{"`-S` simple, 64 clients: not in the lineup"}},
		{name: "n/a when Outrigger is unavailable", r: func() *Results {
			r := logged(nil, nil)
			na := NA{Short: "not built", Detail: "no postgres listener"}
			r.SetUnavailable(Postgres, Outrigger, na)
			r.SetUnavailable(Postgres, OutriggerLogged, na)
			return r
		}(), want: TargetNA, wantDetail: []string{"Outrigger (access log 1 %) n/a (not built), Outrigger n/a (not built)"}},
		{name: "n/a, not met, when plain Outrigger failed and the logged one ran", r: logged([]float64{-1, -1}, []float64{29000, 29500}),
			want: TargetNA, wantDetail: []string{"Outrigger (access log 1 %) 29,250 ops/s, Outrigger n/a (failed)"}},
		{name: "not met when the logged Outrigger failed and the plain one ran", r: logged([]float64{30000, 31000}, []float64{-1, -1}),
			want: NotMet, wantDetail: []string{"Outrigger (access log 1 %) failed (pgbench: run aborted) ✗"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trs := Evaluate([]Target{pgTarget}, tt.r, Summarize(tt.r))
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

	// The Redis target reads the sample's GET, 50 clients row.
	r := sampleResults()
	for _, tr := range Evaluate(DefaultTargets([]string{"redis-get-c50"}), r, Summarize(r)) {
		if tr.Target.Issue == 6 && slices.Equal(tr.Target.Ratio.Cases, []string{"redis-get-c50"}) {
			if tr.Status != Met || !strings.Contains(tr.Detail, "GET, 50 clients 0.975×, cost 2.5 % (117,000 vs 120,000 ops/s)") {
				t.Errorf("redis target: %s %s", tr.Status, tr.Detail)
			}
		}
	}
}

// withPGOnly is the sample with numbers for plain Outrigger on Postgres
// and none for the access-log variant, which is not in the Postgres lineup.
func withPGOnly() *Results {
	r := sampleResults()
	delete(r.Unavailable, Postgres+"/"+Outrigger)
	r.Runs = append(r.Runs, Run{Round: 1, Case: "pg-select-c64", Contestant: Outrigger, OK: true, OpsPerSec: 34000})
	return r
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
