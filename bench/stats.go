package bench

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MinMax returns the smallest and largest of xs, or NaN, NaN for none.
func MinMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(xs), slices.Max(xs)
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. NaN for no values. xs is sorted in place.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	sort.Float64s(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	return xs[max(rank, 1)-1]
}

// Stat is one cell of the results: a contestant's numbers for one case,
// over the rounds.
type Stat struct {
	Contestant string
	Runs       int     // attempted
	OK         int     // counted
	Median     float64 // ops/s
	Min, Max   float64
	LatAvgMS   float64 // median over the counted runs; NaN: unknown
	LatP99MS   float64 // median over the counted runs; NaN: unknown
	// CPUMicrosPerOp is the contestant process's CPU µs per operation,
	// median over the counted runs that have it; NaN: unknown (direct).
	CPUMicrosPerOp float64
	NA             *NA // set when no run counted
	// Note is set when some runs failed but others counted.
	Note string
}

// Valid reports whether the stat has numbers.
func (s *Stat) Valid() bool { return s != nil && s.NA == nil && s.OK > 0 }

// Row is one case with a stat per contestant of its protocol's lineup.
type Row struct {
	Case  CaseInfo
	Stats []Stat
}

// Stat returns the stat of contestant, or nil.
func (r *Row) Stat(contestant string) *Stat {
	for i := range r.Stats {
		if r.Stats[i].Contestant == contestant {
			return &r.Stats[i]
		}
	}
	return nil
}

// Summary is the results reduced to medians: one row per case, in case
// order.
type Summary struct {
	Rows []Row
}

// Row returns the row of case id, or nil.
func (s *Summary) Row(id string) *Row {
	for i := range s.Rows {
		if s.Rows[i].Case.ID == id {
			return &s.Rows[i]
		}
	}
	return nil
}

// Summarize reduces r's runs to medians. A contestant that was unavailable
// for the protocol gets that reason; one whose every run failed gets the
// first failure as its reason ("failed"); one with some failed runs gets
// the medians of the others and a note.
func Summarize(r *Results) *Summary {
	s := &Summary{}
	for _, c := range r.Cases {
		row := Row{Case: c}
		for _, id := range r.Lineup[c.Protocol] {
			row.Stats = append(row.Stats, summarizeCell(r, c, id))
		}
		s.Rows = append(s.Rows, row)
	}
	return s
}

func summarizeCell(r *Results, c CaseInfo, contestant string) Stat {
	st := Stat{Contestant: contestant, Median: math.NaN(), Min: math.NaN(), Max: math.NaN(),
		LatAvgMS: math.NaN(), LatP99MS: math.NaN(), CPUMicrosPerOp: math.NaN()}
	if na, ok := r.UnavailableFor(c.Protocol, contestant); ok {
		st.NA = &na
		return st
	}
	var ops, avg, p99, cpu []float64
	var errs []string
	for _, run := range r.Runs {
		if run.Case != c.ID || run.Contestant != contestant {
			continue
		}
		st.Runs++
		if !run.OK {
			errs = append(errs, run.Error)
			continue
		}
		st.OK++
		ops = append(ops, run.OpsPerSec)
		if run.LatAvgMS > 0 {
			avg = append(avg, run.LatAvgMS)
		}
		if run.LatP99MS > 0 {
			p99 = append(p99, run.LatP99MS)
		}
		if run.CPUMicrosPerOp > 0 {
			cpu = append(cpu, run.CPUMicrosPerOp)
		}
	}
	switch {
	case st.Runs == 0:
		st.NA = &NA{Short: "not run", Detail: "no run of this case was recorded for this contestant"}
		return st
	case st.OK == 0:
		st.NA = &NA{Short: "failed", Detail: mostCommon(errs)}
		return st
	case len(errs) > 0:
		st.Note = fmt.Sprintf("%d of %d runs failed (%s); the numbers are from the other %d", len(errs), st.Runs, mostCommon(errs), st.OK)
	}
	st.Median = Median(ops)
	st.Min, st.Max = MinMax(ops)
	st.LatAvgMS = Median(avg)
	st.LatP99MS = Median(p99)
	st.CPUMicrosPerOp = Median(cpu)
	return st
}

// mostCommon returns the message that occurs most often (the first of
// equals), so a footnote names the usual failure rather than a one-off.
func mostCommon(msgs []string) string {
	best, bestN := "", 0
	for _, m := range msgs {
		n := 0
		for _, o := range msgs {
			if o == m {
				n++
			}
		}
		if n > bestN {
			best, bestN = m, n
		}
	}
	if strings.TrimSpace(best) == "" {
		return "no reason recorded"
	}
	return best
}

// Ratio returns a/b, and false when either is missing or b is zero.
func Ratio(a, b float64) (float64, bool) {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN(), false
	}
	return a / b, true
}
