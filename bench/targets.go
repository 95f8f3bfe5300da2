package bench

import (
	"fmt"
	"math"
	"strings"
)

// Target statuses.
const (
	Met      = "met"
	NotMet   = "not met"
	TargetNA = "n/a"
)

// Target is one promise from an issue that a run's numbers can check:
// either a throughput ratio (Ratio) or a memory bound (Idle).
type Target struct {
	Issue int
	Text  string
	Ratio *RatioTarget
	Idle  *IdleTarget
}

// RatioTarget asks that contestant Of reach at least Min times the ops/s of
// contestant To (Direct, or Peer for the protocol's peer) on every one of
// Cases.
type RatioTarget struct {
	Cases []string
	Of    string
	To    string // a contestant id, or Peer
	Min   float64
	// Cost marks a target on what a feature costs: To is the same proxy
	// without the feature, a baseline rather than a rival, so a case where
	// To has no numbers is n/a instead of met.
	Cost bool
}

// Peer stands for the protocol's peer (PgBouncer, twemproxy) in a
// RatioTarget.
const Peer = "peer"

// IdleTarget asks that contestant spend at most MaxKiB of RSS per idle
// client of protocol with Clients connected.
type IdleTarget struct {
	Protocol   string
	Contestant string
	Clients    int
	MaxKiB     float64
}

// TargetResult is a target with its verdict on one run.
type TargetResult struct {
	Target Target
	Status string // Met, NotMet, TargetNA
	Detail string
}

// DefaultTargets are the measurable targets of issues 3 (Postgres), 4
// (Redis), 6 (observability: what the access log costs) and 7
// (benchmarks). redisCases is every Redis case id of the run ("≥ 1.0x
// twemproxy on every case").
func DefaultTargets(redisCases []string) []Target {
	return []Target{
		{Issue: 3, Text: "`-S` simple, 64 clients: Outrigger ≥ 1.0× PgBouncer",
			Ratio: &RatioTarget{Cases: []string{"pg-select-c64"}, Of: Outrigger, To: Peer, Min: 1.0}},
		{Issue: 3, Text: "`-S -M extended`, 64 clients: Outrigger ≥ 1.0× PgBouncer",
			Ratio: &RatioTarget{Cases: []string{"pg-select-ext-c64"}, Of: Outrigger, To: Peer, Min: 1.0}},
		{Issue: 3, Text: "TPC-B, 32 clients: Outrigger ≥ 1.0× PgBouncer",
			Ratio: &RatioTarget{Cases: []string{"pg-tpcb-c32"}, Of: Outrigger, To: Peer, Min: 1.0}},
		{Issue: 3, Text: "`-C -S` (a new connection per transaction), 16 clients: Outrigger ≥ 2× direct",
			Ratio: &RatioTarget{Cases: []string{"pg-connect-select-c16"}, Of: Outrigger, To: Direct, Min: 2.0}},
		{Issue: 3, Text: "`-M prepared -S`, 16 clients: Outrigger ≥ 0.8× direct",
			Ratio: &RatioTarget{Cases: []string{"pg-prepared-select-c16"}, Of: Outrigger, To: Direct, Min: 0.8}},
		{Issue: 4, Text: "every Redis case: Outrigger ≥ 1.0× twemproxy",
			Ratio: &RatioTarget{Cases: redisCases, Of: Outrigger, To: Peer, Min: 1.0}},
		{Issue: 4, Text: "`-P 16` (SET and GET, 50 clients): Outrigger ≥ 0.6× direct",
			Ratio: &RatioTarget{Cases: []string{"redis-set-c50-p16", "redis-get-c50-p16"}, Of: Outrigger, To: Direct, Min: 0.6}},
		{Issue: 4, Text: "50 clients (SET and GET): Outrigger ≥ 0.85× direct",
			Ratio: &RatioTarget{Cases: []string{"redis-set-c50", "redis-get-c50"}, Of: Outrigger, To: Direct, Min: 0.85}},
		{Issue: 6, Text: "access log at 1 % sampling costs ≤ 3 % of throughput: Outrigger (access log) ≥ 0.97 × Outrigger on `-S` simple, 64 clients",
			Ratio: &RatioTarget{Cases: []string{"pg-select-c64"}, Of: OutriggerLogged, To: Outrigger, Min: 0.97, Cost: true}},
		{Issue: 6, Text: "access log at 1 % sampling costs ≤ 3 % of throughput: Outrigger (access log) ≥ 0.97 × Outrigger on GET, 50 clients",
			Ratio: &RatioTarget{Cases: []string{"redis-get-c50"}, Of: OutriggerLogged, To: Outrigger, Min: 0.97, Cost: true}},
		{Issue: 7, Text: "RSS per idle Postgres client at 5000 clients: Outrigger ≤ 4 KiB",
			Idle: &IdleTarget{Protocol: Postgres, Contestant: Outrigger, Clients: 5000, MaxKiB: 4}},
		{Issue: 7, Text: "RSS per idle Redis client at 5000 clients: Outrigger ≤ 4 KiB",
			Idle: &IdleTarget{Protocol: Redis, Contestant: Outrigger, Clients: 5000, MaxKiB: 4}},
	}
}

// Evaluate gives each target its verdict from r and its summary s.
func Evaluate(targets []Target, r *Results, s *Summary) []TargetResult {
	out := make([]TargetResult, 0, len(targets))
	for _, t := range targets {
		tr := TargetResult{Target: t}
		switch {
		case t.Ratio != nil:
			tr.Status, tr.Detail = evalRatio(t.Ratio, r, s)
		case t.Idle != nil:
			tr.Status, tr.Detail = evalIdle(t.Idle, r)
		default:
			tr.Status, tr.Detail = TargetNA, "target has nothing to check"
		}
		out = append(out, tr)
	}
	return out
}

// evalRatio checks each case: not met if any measured case falls short or
// Of failed where the reference did not; met if at least one case is met
// and none falls short; n/a otherwise. A case where Of ran and the
// reference failed counts as met, unless the target is a Cost: then it is
// n/a, as there is no baseline to take the cost from.
func evalRatio(t *RatioTarget, r *Results, s *Summary) (string, string) {
	var parts []string
	var met, short, na int
	for _, id := range t.Cases {
		row := s.Row(id)
		if row == nil {
			na++
			parts = append(parts, id+": not in this run")
			continue
		}
		to := t.To
		if to == Peer {
			to = r.Peer[row.Case.Protocol]
		}
		of, ref := row.Stat(t.Of), row.Stat(to)
		ofName, refName := r.Contestant(t.Of).Name, r.Contestant(to).Name
		label := caseLabel(row.Case)
		switch {
		case of == nil || ref == nil:
			na++
			parts = append(parts, label+": not in the lineup")
		case of.Valid() && ref.Valid():
			ratio := of.Median / ref.Median
			mark := ""
			if ratio < t.Min {
				short++
				mark = " ✗"
			} else {
				met++
			}
			if t.Cost {
				// A cost of a few percent needs the third digit: 0.968×
				// falls short of 0.97× although it rounds to it.
				parts = append(parts, fmt.Sprintf("%s %.3f×%s, cost %.1f %% (%s vs %s ops/s)", label, ratio, mark, 100*(1-ratio), fmtOps(of.Median), fmtOps(ref.Median)))
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f×%s (%s vs %s ops/s)", label, ratio, mark, fmtOps(of.Median), fmtOps(ref.Median)))
		case of.Valid() && !t.Cost:
			met++
			parts = append(parts, fmt.Sprintf("%s: %s %s, %s %s", label, ofName, describeStat(of), refName, describeStat(ref)))
		case ref.Valid() && of.NA != nil && of.NA.Short == "failed":
			short++
			parts = append(parts, fmt.Sprintf("%s: %s failed (%s) ✗", label, ofName, of.NA.Detail))
		default:
			na++
			parts = append(parts, fmt.Sprintf("%s: %s %s, %s %s", label, ofName, describeStat(of), refName, describeStat(ref)))
		}
	}
	detail := strings.Join(parts, "; ")
	switch {
	case short > 0:
		return NotMet, detail
	case met > 0:
		return Met, detail
	default:
		return TargetNA, detail
	}
}

func evalIdle(t *IdleTarget, r *Results) (string, string) {
	name := r.Contestant(t.Contestant).Name
	if na, ok := r.UnavailableFor(t.Protocol, t.Contestant); ok {
		return TargetNA, fmt.Sprintf("%s: %s", name, na.Short)
	}
	for _, m := range r.Idle {
		if m.Protocol != t.Protocol || m.Contestant != t.Contestant || m.Clients != t.Clients {
			continue
		}
		if m.Error != "" {
			return TargetNA, fmt.Sprintf("%s at %d idle clients: %s", name, t.Clients, m.Error)
		}
		d := fmt.Sprintf("%.2f KiB per idle client (RSS %s → %s)", m.PerClientKiB, fmtKiB(m.BaseKiB), fmtKiB(m.RSSKiB))
		if m.PerClientKiB <= t.MaxKiB {
			return Met, d
		}
		return NotMet, d
	}
	return TargetNA, fmt.Sprintf("not measured at %d idle clients in this run", t.Clients)
}

// describeStat gives a cell's median ops/s, or why it has none.
func describeStat(s *Stat) string {
	switch {
	case s.Valid():
		return fmtOps(s.Median) + " ops/s"
	case s != nil && s.NA != nil:
		return "n/a (" + s.NA.Short + ")"
	default:
		return "n/a"
	}
}

// caseLabel is how targets and footnotes name a case.
func caseLabel(c CaseInfo) string {
	if c.Title == "" {
		return c.ID
	}
	return c.Title
}

// fmtOps renders ops/s with thousands separators and no decimals.
func fmtOps(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return groupThousands(int64(math.Round(v)))
}

// fmtKiB renders a KiB amount as MiB with one decimal.
func fmtKiB(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

func groupThousands(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
