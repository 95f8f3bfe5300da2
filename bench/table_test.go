package bench

import (
	"bytes"
	"flag"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./bench -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func TestResultsMarkdownGolden(t *testing.T) {
	r := sampleResults()
	s := Summarize(r)
	trs := Evaluate(DefaultTargets([]string{"redis-get-c50"}), r, s)
	var b bytes.Buffer
	WriteResultsMarkdown(&b, r, s, trs)
	golden(t, "results.golden.md", b.Bytes())
}

func TestBenchmarksPageGolden(t *testing.T) {
	r := sampleResults()
	r.Notes = []string{"a note"}
	r.Machine.Versions["Outrigger"] = "outrigger 91cbdef-dirty commit 91cbdef go1.26.8 linux/amd64"
	r.Profiles = []Profile{{Case: "redis-get-c50", Kind: "cpu", Path: "profile-redis-get-c50-cpu.pb.gz", Seconds: 15}}
	s := Summarize(r)
	trs := Evaluate(DefaultTargets([]string{"redis-get-c50"}), r, s)
	var b bytes.Buffer
	WriteBenchmarksPage(&b, r, s, trs, PageOptions{ResultsDir: "bench/results", Charts: []string{"throughput-postgres.png"}})
	out := b.String()
	for _, want := range []string{
		"**Quick run.**",
		"make bench-quick",
		"- CPU: Test CPU, 2 cores",
		"![throughput-postgres](bench/results/throughput-postgres.png)",
		"[results.json](bench/results/results.json)",
		"go tool pprof -top bin/outrigger bench/results/profile-redis-get-c50-cpu.pb.gz",
		"## How the numbers are taken",
		"- a note",
		"Outrigger was built from a working tree with uncommitted changes (`outrigger 91cbdef-dirty",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	golden(t, "benchmarks.golden.md", b.Bytes())
}

func TestCaseTableCells(t *testing.T) {
	r := sampleResults()
	s := Summarize(r)
	fn := &Footnotes{}
	var b bytes.Buffer
	WriteCaseTable(&b, r, s, Postgres, fn)
	out := b.String()
	tests := []struct{ name, want string }{
		{"direct against itself", "| direct | 41,000 | 40,000–42,000 | — | 1.15× |"},
		{"peer with a failed round", "| PgBouncer | 35,500[^1] | 35,000–36,000 | 0.87× | — |"},
		{"not built, one footnote for all its cells", "| **Outrigger** | n/a (not built)[^2] |"},
		{"every round failed", "| HAProxy | n/a (failed)[^3] |"},
	}
	for _, tt := range tests {
		if !strings.Contains(out, tt.want) {
			t.Errorf("%s: table lacks %q:\n%s", tt.name, tt.want, out)
		}
	}
	if strings.Count(out, "[^2]") != 2 {
		t.Errorf("the not-built footnote is cited %d times, want 2 (one per case)", strings.Count(out, "[^2]"))
	}
	if fn.Len() != 3 {
		t.Errorf("%d footnotes, want 3", fn.Len())
	}
}

// TestAccessLogVariantInTables: Outrigger with its access log on gets a row
// of its own after Outrigger, measured against direct and the peer like the
// others and never a reference itself, and no row in the memory table.
func TestAccessLogVariantInTables(t *testing.T) {
	r := sampleResults()
	s := Summarize(r)
	var b bytes.Buffer
	WriteCaseTable(&b, r, s, Redis, &Footnotes{})
	out := b.String()
	plain := strings.Index(out, "| **Outrigger** | 120,000 |")
	logged := strings.Index(out, "| Outrigger (access log 1 %) | 117,000 | 116,000–118,000 | 0.75× | 1.18× |")
	if plain < 0 || logged < plain {
		t.Errorf("want the access-log row after Outrigger's, with ×direct and ×peer:\n%s", out)
	}
	if strings.Contains(out, "×Outrigger") {
		t.Errorf("the access-log variant became a reference column:\n%s", out)
	}
	b.Reset()
	WriteIdleTable(&b, r, &Footnotes{})
	if strings.Contains(b.String(), "access log") {
		t.Errorf("memory table has a row for the access-log variant:\n%s", b.String())
	}
	if contestantColor(OutriggerLogged) == contestantColor(Outrigger) || contestantColor(OutriggerLogged) == color.Black {
		t.Error("the access-log variant needs a color of its own")
	}
}

func TestFootnotesDedupe(t *testing.T) {
	fn := &Footnotes{}
	a, b, c := fn.Ref("x"), fn.Ref("y|z"), fn.Ref("x")
	if a != "[^1]" || b != "[^2]" || c != "[^1]" {
		t.Fatalf("refs %s %s %s", a, b, c)
	}
	var out bytes.Buffer
	fn.Write(&out)
	if out.String() != "[^1]: x\n[^2]: y\\|z\n" {
		t.Fatalf("footnotes %q", out.String())
	}
}

func TestWriteCharts(t *testing.T) {
	dir := t.TempDir()
	r := sampleResults()
	files, err := WriteCharts(dir, r, Summarize(r))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ThroughputChart(Postgres), LatencyChart(Postgres), ThroughputChart(Redis), LatencyChart(Redis), ChartIdleRSS}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("charts %v, want %v", files, want)
	}
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
			t.Errorf("%s is only %v", f, b)
		}
	}
}
