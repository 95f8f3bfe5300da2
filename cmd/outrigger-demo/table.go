package main

import (
	"io"
	"strings"
	"unicode/utf8"
)

// table prints rows in aligned columns: the first column left-aligned, the
// others right-aligned, unless a column's alignment says otherwise. A row of
// one cell is a heading: printed as it is, without indent, and left out of
// the column widths.
type table struct {
	indent string
	left   map[int]bool // columns (after the first) that are left-aligned
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) heading(s string) { t.rows = append(t.rows, []string{s}) }

func (t *table) write(w io.Writer) {
	var widths []int
	for _, r := range t.rows {
		if len(r) == 1 {
			continue
		}
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range t.rows {
		if len(r) == 1 {
			_, _ = io.WriteString(w, r[0]+"\n")
			continue
		}
		var b strings.Builder
		b.WriteString(t.indent)
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i == 0 || t.left[i] {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		_, _ = io.WriteString(w, strings.TrimRight(b.String(), " ")+"\n")
	}
}
