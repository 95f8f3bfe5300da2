package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Footnotes numbers the reasons behind "n/a" cells and notes, once per
// distinct text, in the order they are first cited.
type Footnotes struct {
	texts []string
	index map[string]int
}

// Ref returns the marker ("[^3]") for text, adding it if new.
func (f *Footnotes) Ref(text string) string {
	if f.index == nil {
		f.index = map[string]int{}
	}
	n, ok := f.index[text]
	if !ok {
		f.texts = append(f.texts, text)
		n = len(f.texts)
		f.index[text] = n
	}
	return fmt.Sprintf("[^%d]", n)
}

// Write writes the footnote definitions.
func (f *Footnotes) Write(w io.Writer) {
	for i, t := range f.texts {
		fmt.Fprintf(w, "[^%d]: %s\n", i+1, escapeCell(t))
	}
}

// Len is the number of footnotes.
func (f *Footnotes) Len() int { return len(f.texts) }

// ProtocolTitle is how tables and charts name a protocol.
func ProtocolTitle(p string) string {
	switch p {
	case Postgres:
		return "Postgres"
	case Redis:
		return "Redis"
	}
	return p
}

// WriteCaseTable writes the markdown table of protocol p's cases: per case
// and contestant, the median ops/s, the min–max over rounds, avg and p99
// latency, and each as a ratio to direct and to the peer, and the median CPU
// the contestant's process spent per operation ("–" for direct, which is
// not a process of the harness's). Reasons for n/a cells and notes go to
// fn.
func WriteCaseTable(w io.Writer, r *Results, s *Summary, p string, fn *Footnotes) {
	peer := r.Contestant(r.Peer[p]).Name
	dn := r.Contestant(Direct).Name
	fmt.Fprintf(w, "| case | contestant | ops/s (median) | min–max | ×%s | ×%s | avg ms | ×%s | ×%s | p99 ms | ×%s | ×%s | CPU µs/op |\n",
		dn, peer, dn, peer, dn, peer)
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, row := range s.Rows {
		if row.Case.Protocol != p {
			continue
		}
		direct, ref := row.Stat(Direct), row.Stat(r.Peer[p])
		for i, st := range row.Stats {
			caseCell := ""
			if i == 0 {
				caseCell = fmt.Sprintf("%s<br>`%s`", escapeCell(row.Case.Title), escapeCell(row.Case.Command))
			}
			name := r.Contestant(st.Contestant).Name
			if st.Contestant == Outrigger {
				name = "**" + name + "**"
			}
			if !st.Valid() {
				na := st.NA
				if na == nil {
					na = &NA{Short: "n/a", Detail: "no numbers"}
				}
				note := fmt.Sprintf("%s, %s: %s", r.Contestant(st.Contestant).Name, caseLabel(row.Case), na.Detail)
				if st.NA != nil && (st.NA.Short == "not built" || st.NA.Short == "not installed" || st.NA.Short == "did not start") {
					// One footnote for every cell of a missing contestant.
					note = fmt.Sprintf("%s (%s): %s", r.Contestant(st.Contestant).Name, ProtocolTitle(p), na.Detail)
				}
				fmt.Fprintf(w, "| %s | %s | n/a (%s)%s | | | | | | | | | | |\n", caseCell, name, escapeCell(na.Short), fn.Ref(note))
				continue
			}
			ops := fmtOps(st.Median)
			if st.Note != "" {
				ops += fn.Ref(fmt.Sprintf("%s, %s: %s", r.Contestant(st.Contestant).Name, caseLabel(row.Case), st.Note))
			}
			rng := "–"
			if st.OK > 1 {
				rng = fmtOps(st.Min) + "–" + fmtOps(st.Max)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				caseCell, name, ops, rng,
				ratioCell(&st, direct, func(x *Stat) float64 { return x.Median }),
				ratioCell(&st, ref, func(x *Stat) float64 { return x.Median }),
				fmtMS(st.LatAvgMS),
				ratioCell(&st, direct, func(x *Stat) float64 { return x.LatAvgMS }),
				ratioCell(&st, ref, func(x *Stat) float64 { return x.LatAvgMS }),
				fmtMS(st.LatP99MS),
				ratioCell(&st, direct, func(x *Stat) float64 { return x.LatP99MS }),
				ratioCell(&st, ref, func(x *Stat) float64 { return x.LatP99MS }),
				FormatCPU(st.CPUMicrosPerOp))
		}
	}
}

// ratioCell renders st's value over ref's ("1.02×"); "—" against itself,
// "–" when either is missing.
func ratioCell(st, ref *Stat, v func(*Stat) float64) string {
	if ref == nil || !ref.Valid() {
		return "–"
	}
	if ref.Contestant == st.Contestant {
		return "—"
	}
	q, ok := Ratio(v(st), v(ref))
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f×", q)
}

// WriteIdleTable writes the memory table: per protocol and contestant, the
// RSS with no client and, per client count, the RSS and the KiB per idle
// client, with the ratio to the peer at the largest count.
func WriteIdleTable(w io.Writer, r *Results, fn *Footnotes) {
	var counts []int
	for _, m := range r.Idle {
		if !slices.Contains(counts, m.Clients) {
			counts = append(counts, m.Clients)
		}
	}
	slices.Sort(counts)
	if len(counts) == 0 {
		fmt.Fprintln(w, "No idle-client measurements in this run.")
		return
	}
	last := counts[len(counts)-1]
	fmt.Fprint(w, "| protocol | contestant | RSS, no client |")
	sep := "|---|---|--:|"
	for _, n := range counts {
		fmt.Fprintf(w, " RSS, %d idle | KiB per client at %d |", n, n)
		sep += "--:|--:|"
	}
	fmt.Fprintf(w, " ×peer at %d |\n%s--:|\n", last, sep)
	for _, p := range []string{Postgres, Redis} {
		for _, c := range r.Lineup[p] {
			if !MeasuresIdle(c) {
				continue
			}
			var ms []Idle
			for _, m := range r.Idle {
				if m.Protocol == p && m.Contestant == c {
					ms = append(ms, m)
				}
			}
			na, unavailable := r.UnavailableFor(p, c)
			if len(ms) == 0 && !unavailable {
				continue
			}
			name := r.Contestant(c).Name
			if c == Outrigger {
				name = "**" + name + "**"
			}
			fmt.Fprintf(w, "| %s | %s |", ProtocolTitle(p), name)
			if unavailable && len(ms) == 0 {
				fmt.Fprintf(w, " n/a (%s)%s |", escapeCell(na.Short),
					fn.Ref(fmt.Sprintf("%s (%s): %s", r.Contestant(c).Name, ProtocolTitle(p), na.Detail)))
				fmt.Fprint(w, strings.Repeat(" |", 2*len(counts)+1))
				fmt.Fprintln(w)
				continue
			}
			base := "–"
			for _, m := range ms {
				if m.BaseKiB > 0 {
					base = fmtKiB(m.BaseKiB)
					break
				}
			}
			fmt.Fprintf(w, " %s |", base)
			for _, n := range counts {
				m, ok := findIdle(ms, n)
				switch {
				case !ok:
					fmt.Fprint(w, " – | – |")
				case m.Error != "":
					fmt.Fprintf(w, " n/a%s | |", fn.Ref(fmt.Sprintf("%s, %s, idle clients: %s", r.Contestant(c).Name, ProtocolTitle(p), m.Error)))
				default:
					fmt.Fprintf(w, " %s | %.2f |", fmtKiB(m.RSSKiB), m.PerClientKiB)
				}
			}
			ratio := "–"
			if m, ok := findIdle(ms, last); ok && m.Error == "" {
				if pm, ok := findIdleOf(r, p, r.Peer[p], last); ok && pm.Error == "" {
					if c == r.Peer[p] {
						ratio = "—"
					} else if q, ok := Ratio(m.PerClientKiB, pm.PerClientKiB); ok {
						ratio = fmt.Sprintf("%.2f×", q)
					}
				}
			}
			fmt.Fprintf(w, " %s |\n", ratio)
		}
	}
}

func findIdle(ms []Idle, n int) (Idle, bool) {
	for _, m := range ms {
		if m.Clients == n {
			return m, true
		}
	}
	return Idle{}, false
}

func findIdleOf(r *Results, p, c string, n int) (Idle, bool) {
	for _, m := range r.Idle {
		if m.Protocol == p && m.Contestant == c && m.Clients == n {
			return m, true
		}
	}
	return Idle{}, false
}

// WriteTargets writes the targets as a table with their verdicts.
func WriteTargets(w io.Writer, trs []TargetResult) {
	fmt.Fprintln(w, "| issue | target | verdict | numbers |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, tr := range trs {
		verdict := tr.Status
		switch tr.Status {
		case Met:
			verdict = "✅ met"
		case NotMet:
			verdict = "❌ not met"
		case TargetNA:
			verdict = "➖ n/a"
		}
		fmt.Fprintf(w, "| #%d | %s | %s | %s |\n", tr.Target.Issue, escapeCell(tr.Target.Text), verdict, escapeCell(tr.Detail))
	}
}

// WriteResultsMarkdown writes the whole results file (bench/results/results.md):
// the case tables, the memory table, the targets and the footnotes.
func WriteResultsMarkdown(w io.Writer, r *Results, s *Summary, trs []TargetResult) {
	fn := &Footnotes{}
	fmt.Fprintf(w, "# Side-by-side results (%s run, %s)\n\n", r.Mode, r.Started.UTC().Format("2006-01-02 15:04 MST"))
	writeBody(w, r, s, trs, fn, "")
	if fn.Len() > 0 {
		fmt.Fprintln(w)
		fn.Write(w)
	}
}

// writeBody writes the targets, the case tables and the memory table, with
// headings one level below level ("" for ##).
func writeBody(w io.Writer, r *Results, s *Summary, trs []TargetResult, fn *Footnotes, level string) {
	h := "##" + level
	fmt.Fprintf(w, "%s Targets\n\n", h)
	WriteTargets(w, trs)
	for _, p := range []string{Postgres, Redis} {
		if len(r.CasesOf(p)) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s %s\n\n", h, ProtocolTitle(p))
		WriteCaseTable(w, r, s, p, fn)
	}
	fmt.Fprintf(w, "\n%s Memory per idle client\n\n", h)
	WriteIdleTable(w, r, fn)
}

// fmtMS renders a latency in milliseconds with about three significant
// digits.
func fmtMS(v float64) string {
	switch {
	case math.IsNaN(v) || v <= 0:
		return "–"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// escapeCell keeps text from breaking a markdown table row.
func escapeCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
