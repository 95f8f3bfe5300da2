package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart file names, in the results directory.
const (
	ChartIdleRSS = "idle-rss.png"
)

// ThroughputChart and LatencyChart name the chart files of protocol p.
func ThroughputChart(p string) string { return "throughput-" + p + ".png" }

// LatencyChart names the latency chart of protocol p.
func LatencyChart(p string) string { return "latency-" + p + ".png" }

// contestantColor gives each contestant the same color in every chart.
func contestantColor(id string) color.Color {
	switch id {
	case Direct:
		return color.RGBA{R: 0x88, G: 0x88, B: 0x88, A: 0xff}
	case HAProxy:
		return color.RGBA{R: 0x44, G: 0x77, B: 0xaa, A: 0xff}
	case PgBouncer, Twemproxy:
		return color.RGBA{R: 0xee, G: 0x77, B: 0x33, A: 0xff}
	case Outrigger:
		return color.RGBA{R: 0x22, G: 0x88, B: 0x33, A: 0xff}
	case OutriggerLogged:
		// Outrigger's green, lighter: the same proxy with its access log on.
		return color.RGBA{R: 0x77, G: 0xbb, B: 0x77, A: 0xff}
	}
	return color.Black
}

const (
	chartCols  = 4
	panelW     = 3.3 * vg.Inch
	panelH     = 2.5 * vg.Inch
	chartDPI   = 96
	barWidth   = vg.Length(22) // points
	titleSize  = 9
	axisSize   = 8
	headerSize = 12
)

// WriteCharts writes the throughput and latency charts of each protocol
// that has cases, and the idle-memory chart, into dir. It returns the file
// names written.
func WriteCharts(dir string, r *Results, s *Summary) ([]string, error) {
	var written []string
	for _, p := range []string{Postgres, Redis} {
		if len(r.CasesOf(p)) == 0 {
			continue
		}
		title := fmt.Sprintf("%s throughput: ops/s, median of %d round(s), whiskers min–max (%s run)", ProtocolTitle(p), r.Rounds, r.Mode)
		if err := casePanels(filepath.Join(dir, ThroughputChart(p)), title, r, s, p, throughputPanel); err != nil {
			return written, fmt.Errorf("throughput chart: %w", err)
		}
		written = append(written, ThroughputChart(p))
		title = fmt.Sprintf("%s latency: p99 bars, average dots, ms (%s run)", ProtocolTitle(p), r.Mode)
		if err := casePanels(filepath.Join(dir, LatencyChart(p)), title, r, s, p, latencyPanel); err != nil {
			return written, fmt.Errorf("latency chart: %w", err)
		}
		written = append(written, LatencyChart(p))
	}
	if len(r.Idle) > 0 {
		if err := idleChart(filepath.Join(dir, ChartIdleRSS), r); err != nil {
			return written, fmt.Errorf("idle chart: %w", err)
		}
		written = append(written, ChartIdleRSS)
	}
	return written, nil
}

// chartName is a contestant's name under its bar: a parenthesis goes on a
// line of its own ("Outrigger\n(access log 1 %)"), so five names fit under
// a panel without running into each other.
func chartName(r *Results, id string) string {
	name := r.Contestant(id).Name
	if i := strings.Index(name, " ("); i > 0 {
		return name[:i] + "\n" + name[i+1:]
	}
	return name
}

// panelFunc draws one case's panel.
type panelFunc func(pl *plot.Plot, r *Results, row *Row) error

// casePanels draws one panel per case of protocol p in a grid, each with its
// own y axis (the cases differ by orders of magnitude), under a title.
func casePanels(path, title string, r *Results, s *Summary, p string, draw1 panelFunc) error {
	var rows []*Row
	for i := range s.Rows {
		if s.Rows[i].Case.Protocol == p {
			rows = append(rows, &s.Rows[i])
		}
	}
	nrows := (len(rows) + chartCols - 1) / chartCols
	grid := make([][]*plot.Plot, nrows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, chartCols)
	}
	for i, row := range rows {
		pl := plot.New()
		pl.Title.Text = strings.ReplaceAll(row.Case.Title, "`", "")
		pl.Title.TextStyle.Font.Size = titleSize
		pl.X.Tick.Label.Font.Size = axisSize
		pl.Y.Tick.Label.Font.Size = axisSize
		var names []string
		for _, st := range row.Stats {
			names = append(names, chartName(r, st.Contestant))
		}
		pl.NominalX(names...)
		pl.Y.Min = 0
		pl.Y.Tick.Marker = compactTicks{}
		if err := draw1(pl, r, row); err != nil {
			return fmt.Errorf("%s: %w", row.Case.ID, err)
		}
		pl.Y.Max *= 1.08 // headroom above the tallest bar
		grid[i/chartCols][i%chartCols] = pl
	}
	return saveGrid(path, title, grid)
}

func throughputPanel(pl *plot.Plot, r *Results, row *Row) error {
	for i, st := range row.Stats {
		if !st.Valid() {
			if err := naLabel(pl, float64(i), st.NA); err != nil {
				return err
			}
			continue
		}
		if err := bar(pl, float64(i), st.Median, contestantColor(st.Contestant)); err != nil {
			return err
		}
		if st.OK > 1 {
			eb, err := plotter.NewYErrorBars(yErr{
				XYs:     plotter.XYs{{X: float64(i), Y: st.Median}},
				YErrors: plotter.YErrors{{Low: st.Median - st.Min, High: st.Max - st.Median}},
			})
			if err != nil {
				return err
			}
			pl.Add(eb)
		}
	}
	return nil
}

func latencyPanel(pl *plot.Plot, r *Results, row *Row) error {
	for i, st := range row.Stats {
		if !st.Valid() {
			if err := naLabel(pl, float64(i), st.NA); err != nil {
				return err
			}
			continue
		}
		if !math.IsNaN(st.LatP99MS) {
			if err := bar(pl, float64(i), st.LatP99MS, contestantColor(st.Contestant)); err != nil {
				return err
			}
		}
		if !math.IsNaN(st.LatAvgMS) {
			sc, err := plotter.NewScatter(plotter.XYs{{X: float64(i), Y: st.LatAvgMS}})
			if err != nil {
				return err
			}
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			sc.GlyphStyle.Radius = vg.Points(3)
			sc.GlyphStyle.Color = color.Black
			pl.Add(sc)
		}
	}
	return nil
}

// compactTicks labels an axis with few digits: 40k, 1.5M, 0.25.
type compactTicks struct{}

func (compactTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = compact(ticks[i].Value)
		}
	}
	return ticks
}

// compact renders v with a k or M suffix and no trailing zeros.
func compact(v float64) string {
	trim := func(s string) string {
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	}
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trim(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e3:
		return trim(fmt.Sprintf("%.2f", v/1e3)) + "k"
	case a == 0:
		return "0"
	default:
		return trim(fmt.Sprintf("%.3f", v))
	}
}

// yErr is one point with its error bar.
type yErr struct {
	plotter.XYs
	plotter.YErrors
}

func bar(pl *plot.Plot, x, v float64, c color.Color) error {
	b, err := plotter.NewBarChart(plotter.Values{v}, barWidth)
	if err != nil {
		return err
	}
	b.XMin = x
	b.Color = c
	b.LineStyle.Width = 0
	pl.Add(b)
	return nil
}

func naLabel(pl *plot.Plot, x float64, na *NA) error {
	text := "n/a"
	if na != nil && na.Short != "" && na.Short != "n/a" {
		text = "n/a:\n" + na.Short
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: 0}}, Labels: []string{text}})
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = 7
		l.TextStyle[i].XAlign = draw.XCenter
	}
	pl.Add(l)
	return nil
}

// idleChart draws, per protocol, the KiB per idle client of each
// contestant at each client count.
func idleChart(path string, r *Results) error {
	var counts []int
	for _, m := range r.Idle {
		if !slices.Contains(counts, m.Clients) {
			counts = append(counts, m.Clients)
		}
	}
	slices.Sort(counts)
	shades := []color.Color{
		color.RGBA{R: 0x99, G: 0xbb, B: 0xdd, A: 0xff},
		color.RGBA{R: 0x33, G: 0x66, B: 0x99, A: 0xff},
		color.RGBA{R: 0x11, G: 0x33, B: 0x55, A: 0xff},
	}
	grid := [][]*plot.Plot{make([]*plot.Plot, 2)}
	for pi, p := range []string{Postgres, Redis} {
		pl := plot.New()
		pl.Title.Text = ProtocolTitle(p) + ": RSS per idle client (KiB)"
		pl.Title.TextStyle.Font.Size = titleSize
		pl.X.Tick.Label.Font.Size = axisSize
		pl.Y.Tick.Label.Font.Size = axisSize
		pl.Y.Min = 0
		pl.Y.Tick.Marker = compactTicks{}
		var lineup []string
		for _, c := range r.Lineup[p] {
			if MeasuresIdle(c) {
				lineup = append(lineup, c)
			}
		}
		var names []string
		for _, c := range lineup {
			names = append(names, r.Contestant(c).Name)
		}
		pl.NominalX(names...)
		w := barWidth * 0.8
		for ci, n := range counts {
			vals := make(plotter.Values, len(lineup))
			var missing []int
			for i, c := range lineup {
				m, ok := findIdleOf(r, p, c, n)
				if !ok || m.Error != "" {
					missing = append(missing, i)
					continue
				}
				vals[i] = math.Max(m.PerClientKiB, 0)
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return err
			}
			b.Color = shades[ci%len(shades)]
			b.LineStyle.Width = 0
			b.Offset = (vg.Length(ci) - vg.Length(len(counts)-1)/2) * w
			pl.Add(b)
			pl.Legend.Add(fmt.Sprintf("%d idle clients", n), b)
			for _, i := range missing {
				if err := naLabel(pl, float64(i), nil); err != nil {
					return err
				}
			}
		}
		pl.Legend.Top = true
		pl.Legend.TextStyle.Font.Size = axisSize
		pl.Y.Max *= 1.35 // room for the legend above the bars
		grid[0][pi] = pl
	}
	return saveGrid(path, fmt.Sprintf("Memory per idle client (VmRSS after − before, %s run)", r.Mode), grid)
}

// saveGrid draws the plots, aligned, under a title into a PNG at path.
func saveGrid(path, title string, grid [][]*plot.Plot) error {
	cols := len(grid[0])
	w := panelW * vg.Length(cols)
	header := vg.Length(0.4 * vg.Inch)
	h := panelH*vg.Length(len(grid)) + header
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(chartDPI))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	// The title.
	ts := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, headerSize), XAlign: draw.XCenter, YAlign: draw.YTop, Handler: plot.DefaultTextHandler}
	dc.FillText(ts, vg.Point{X: w / 2, Y: h - vg.Points(6)}, title)

	body := draw.Crop(dc, 0, 0, 0, -header)
	tiles := draw.Tiles{Rows: len(grid), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, tiles, body)
	for j := range grid {
		for i, pl := range grid[j] {
			if pl != nil {
				pl.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
