package metrics

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// boundedLabels are the only label names a metric may have, each with where
// its values come from. None of them can take a value from client input
// (query text, key names, client names or addresses): a new label must be
// added here with the reason its value set is bounded.
var boundedLabels = map[string]string{
	"listener":    "a listener name from the config",
	"kind":        "a listener kind, or a Redis upstream connection kind: fixed sets",
	"reason":      "fixed sets in code (refusals, TLS failures, pins, retries)",
	"upstream":    "an upstream address as written in the config",
	"route":       "an HTTP route prefix (and host) from the config, or none",
	"code":        "an HTTP status class: 1xx..5xx, error",
	"profile":     "a TLS profile name from the config",
	"file":        "cert or ca",
	"result":      "fixed sets in code",
	"hash":        "the digest of the live config",
	"command":     "a Redis command name from the command table",
	"outcome":     "Outcomes(), or commit/rollback for transactions",
	"error_class": "SQLStateClasses() or RedisErrorClasses()",
	"pool":        "database/user of a pool whose credentials the server accepted; at most 256 per listener",
	"state":       "idle, in_use, dialing",
	"rule":        "a rule or rate limit name from the config, or default",
	"decision":    "fixed set in package policy",
	"class":       "fixed set: connect, auth, lost, reset",
	"version":     "the build's version (outrigger_build_info) or Go's (go_info)",
	"commit":      "the build's commit",
	"go_version":  "the Go release the binary was built with",
}

var variableLabelsRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// labelNames returns every metric family the registry describes with its
// variable label names.
func labelNames(t *testing.T, c prometheus.Collector) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	out := map[string][]string{}
	for d := range ch {
		m := variableLabelsRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the labels of %s", d)
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		out[m[1]] = labels
	}
	return out
}

// TestLabelsAreBounded fails on any label name, of any metric the registry
// serves (the Go and process collectors included), that is not one whose
// values are bounded by the config or by code.
func TestLabelsAreBounded(t *testing.T) {
	m := New(BuildInfo{Version: "v", Commit: "c"})
	fams := labelNames(t, m.Registry)
	if len(fams) < 40 {
		t.Fatalf("described %d metric families; the lookup is broken", len(fams))
	}
	// Gathered families too: a collector could emit labels it does not
	// describe (const labels, unchecked collectors).
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if !slices.Contains(fams[mf.GetName()], lp.GetName()) {
					fams[mf.GetName()] = append(fams[mf.GetName()], lp.GetName())
				}
			}
		}
	}
	for name, labels := range fams {
		for _, l := range labels {
			if _, ok := boundedLabels[l]; !ok {
				t.Errorf("%s has the label %q, which is not known to be bounded; if its values come only from the config or a fixed set, add it to boundedLabels with the reason", name, l)
			}
		}
	}
}

func TestOutcomeAndErrorClass(t *testing.T) {
	if got := Outcomes(); !slices.Equal(got, []string{"ok", "error", "proxy_error", "denied", "rate_limited", "timeout"}) {
		t.Errorf("Outcomes() = %v", got)
	}
	if got := Outcome(200).String(); got != "error" {
		t.Errorf("an out-of-range outcome is %q, want error", got)
	}
	pg := []struct{ code, want string }{
		{"", "none"}, {"42P01", "42"}, {"57014", "57"}, {"0A000", "0A"}, {"XX000", "XX"},
		{"ZZ999", "other"}, {"4", "other"}, {"'; drop table x", "other"}, {"MARKER", "other"},
	}
	for _, tt := range pg {
		if got := SQLStateClass(tt.code); got != tt.want {
			t.Errorf("SQLStateClass(%q) = %q, want %q", tt.code, got, tt.want)
		}
	}
	rd := []struct{ reply, want string }{
		{"", "none"}, {"-", "none"}, {"-ERR unknown command 'x'\r\n", "ERR"},
		{"WRONGTYPE Operation against a key", "WRONGTYPE"}, {"-NOPERM this user has no permissions", "NOPERM"},
		{"-MOVED 3999 127.0.0.1:6381\r\n", "MOVED"}, {"!EXECABORT Transaction discarded", "EXECABORT"},
		{"-MARKER123 custom module error", "other"}, {"-err lower case", "other"}, {"-ERRX", "other"},
		{"-AVERYLONGPREFIXTHATGOESONANDON", "other"},
	}
	for _, tt := range rd {
		if got := RedisErrorClass([]byte(tt.reply)); got != tt.want {
			t.Errorf("RedisErrorClass(%q) = %q, want %q", tt.reply, got, tt.want)
		}
	}
	for _, c := range SQLStateClasses() {
		if len(c) != 2 && c != "none" && c != "other" {
			t.Errorf("SQLStateClasses has %q", c)
		}
	}
	if !slices.Contains(RedisErrorClasses(), "WRONGTYPE") {
		t.Error("RedisErrorClasses lacks WRONGTYPE")
	}
}

// TestRecordingAllocatesNothing: recording one request's metrics through the
// recorders (the series existing already) allocates nothing, and the
// mappings to bounded labels neither.
func TestRecordingAllocatesNothing(t *testing.T) {
	m := New(BuildInfo{})
	pg := m.PGPoolRecorder("appdb", "app/app")
	rd := m.RedisRecorder("cache")
	errLine := []byte("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
	pg.Record(1000, OutcomeError, "42P01")
	rd.Record("get", 1000, OutcomeOK, nil)
	rd.Record("get", 1000, OutcomeError, errLine)
	for name, f := range map[string]func(){
		"pg ok":           func() { pg.Record(1000, OutcomeOK, "") },
		"pg error":        func() { pg.Record(1000, OutcomeError, "42P01") },
		"redis ok":        func() { rd.Record("get", 1000, OutcomeOK, nil) },
		"redis error":     func() { rd.Record("get", 1000, OutcomeError, errLine) },
		"SQLStateClass":   func() { _ = SQLStateClass("23505") },
		"RedisErrorClass": func() { _ = RedisErrorClass(errLine) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %.1f allocations per call, want 0", name, n)
		}
	}
	var nilPG *PGPoolRecorder
	var nilRD *RedisRecorder
	nilPG.Record(1, OutcomeOK, "")
	nilRD.Record("get", 1, OutcomeOK, nil)
	if (*Metrics)(nil).PGPoolRecorder("a", "b") != nil || (*Metrics)(nil).RedisRecorder("a") != nil {
		t.Error("a nil *Metrics gives a recorder")
	}
}

// BenchmarkRecordRequest is the metrics cost of one request on the hot path:
// a counter and a histogram child resolved beforehand.
func BenchmarkRecordRequest(b *testing.B) {
	m := New(BuildInfo{})
	c := m.PGQueryResults.WithLabelValues("appdb", "app/app", "ok", "none")
	h := m.PGQueryDuration.WithLabelValues("appdb", "app/app")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
		h.Observe(0.000321)
	}
}

// BenchmarkPGPoolRecorder records a successful round trip through the
// recorder the Postgres frontend keeps per pool.
func BenchmarkPGPoolRecorder(b *testing.B) {
	r := New(BuildInfo{}).PGPoolRecorder("appdb", "app/app")
	b.ReportAllocs()
	for b.Loop() {
		r.Record(321000, OutcomeOK, "")
	}
}

// BenchmarkRedisRecorder records a command whose series exist (looked up by
// command name on each call).
func BenchmarkRedisRecorder(b *testing.B) {
	r := New(BuildInfo{}).RedisRecorder("cache")
	r.Record("get", 1000, OutcomeOK, nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Record("get", 21000, OutcomeOK, nil)
	}
}
