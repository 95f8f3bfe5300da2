package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

func TestRenderConfig(t *testing.T) {
	data := configData{AppDB: "127.0.0.1:6432", Cache: "127.0.0.1:6380", Admin: "127.0.0.1:9901",
		Postgres: "127.0.0.1:40001", Redis: "127.0.0.1:40002"}
	b, err := renderConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("{{")) {
		t.Fatalf("unfilled field left:\n%s", b)
	}
	cfg, err := config.Load(config.Source{Data: b, Environ: []string{}})
	if err != nil {
		t.Fatalf("the rendered demo config does not load: %v\n%s", err, b)
	}
	if cfg.Admin.Listen != data.Admin {
		t.Errorf("admin.listen = %q, want %q", cfg.Admin.Listen, data.Admin)
	}
	want := map[string][2]string{
		listenerAppDB: {data.AppDB, data.Postgres},
		listenerCache: {data.Cache, data.Redis},
	}
	got := map[string][2]string{}
	for _, l := range cfg.Listeners() {
		got[l.Name] = [2]string{l.Listen, l.Upstreams()[0].Address}
	}
	if len(got) != len(want) {
		t.Fatalf("listeners %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("listener %s: listen/upstream %v, want %v", name, got[name], w)
		}
	}
	if len(cfg.Redis) != 1 || cfg.Redis[0].Name != listenerCache {
		t.Errorf("the cache is not behind a redis listener: %+v", cfg.Redis)
	}
}

const pgbench15 = `pgbench (15.20 (Debian 15.20-0+deb12u1))
starting vacuum...end.
progress: 1.0 s, 30808.9 tps, lat 0.242 ms stddev 0.932, 0 failed
transaction type: <builtin: select only>
number of transactions actually processed: 152164
number of failed transactions: 3 (0.002%)
latency average = 0.256 ms
latency stddev = 1.153 ms
initial connection time = 34.207 ms
tps = 30590.783040 (without initial connection time)
`

const pgbench13 = `transaction type: <builtin: select only>
number of transactions actually processed: 5000
latency average = 1.000 ms
tps = 7900.5 (including connections establishing)
tps = 8000.25 (excluding connections establishing)
`

func TestParsePgbench(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want pgbenchResult
	}{
		{"15", pgbench15, pgbenchResult{TPS: 30590.783040, LatencyAvgMS: 0.256, Failed: 3, FailedPct: 0.002, Processed: 152164}},
		{"13 has no failed count", pgbench13, pgbenchResult{TPS: 8000.25, LatencyAvgMS: 1, Failed: -1, Processed: 5000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePgbench(tt.out)
			if err != nil || got != tt.want {
				t.Fatalf("parsePgbench = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := parsePgbench("connection refused\n"); err == nil {
		t.Error("parsePgbench accepted output without a tps line")
	}
}

// redisQ is what redis-benchmark -q writes to a pipe.
const redisQ = "\rSET: rps=0.0 (overall: 32000.0) avg_msec=0.400 (overall: 0.400)\r" +
	"                                                                              \r" +
	"SET: 1282051.25 requests per second, p50=0.191 msec\n" +
	"                                                    \rGET: 1923076.88 requests per second, p50=0.127 msec\n\n"

func TestParseRedisBenchmark(t *testing.T) {
	got, err := parseRedisBenchmark(redisQ)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["SET"] != 1282051.25 || got["GET"] != 1923076.88 {
		t.Fatalf("parseRedisBenchmark = %v", got)
	}
	if _, err := parseRedisBenchmark("Could not connect to Redis\n"); err == nil {
		t.Error("parseRedisBenchmark accepted output without results")
	}
}

func TestToolWriter(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		want string
	}{
		{"pipe", false, "> SET: rps=0.0 (overall: 32000.0) avg_msec=0.400 (overall: 0.400)\n" +
			"> SET: 1282051.25 requests per second, p50=0.191 msec\n" +
			"> GET: 1923076.88 requests per second, p50=0.127 msec\n"},
		{"terminal", true, "\r> SET: rps=0.0 (overall: 32000.0) avg_msec=0.400 (overall: 0.400)\r" +
			"\r> SET: 1282051.25 requests per second, p50=0.191 msec" + strings.Repeat(" ", 65-53) + "\n" +
			"> GET: 1923076.88 requests per second, p50=0.127 msec\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newToolWriter(&out, "> ", tt.tty)
			for _, chunk := range strings.SplitAfter(redisQ, "s") { // arbitrary chunking
				_, _ = w.Write([]byte(chunk))
			}
			w.Flush()
			if out.String() != tt.want {
				t.Errorf("shown:\n%q\nwant:\n%q", out.String(), tt.want)
			}
			if w.Captured() != redisQ {
				t.Error("captured output differs from what was written")
			}
		})
	}
}

func TestGatherStats(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	m.ConnAccepted.WithLabelValues("appdb", "tcp").Add(3)
	m.BytesReceived.WithLabelValues("appdb", "tcp").Add(100)
	m.BytesSent.WithLabelValues("appdb", "tcp").Add(2048)
	m.UpstreamConnectDuration.WithLabelValues("appdb", "127.0.0.1:1").Observe(0.001)
	m.UpstreamConnectDuration.WithLabelValues("appdb", "127.0.0.1:2").Observe(0.003)
	m.ConnAccepted.WithLabelValues("cache", "tcp").Add(1)
	m.ConfigReloads.WithLabelValues("success").Add(2)
	m.ConfigReloads.WithLabelValues("rejected").Inc()

	st, err := gatherStats(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if names := st.ListenerNames(); len(names) != 2 || names[0] != "appdb" || names[1] != "cache" {
		t.Fatalf("listeners = %v", names)
	}
	a := st.Listeners["appdb"]
	if a.Accepted != 3 || a.BytesIn != 100 || a.BytesOut != 2048 || a.Connects != 2 {
		t.Errorf("appdb = %+v", *a)
	}
	if mean := a.MeanConnect(); mean < 0.0019 || mean > 0.0021 {
		t.Errorf("mean connect = %v, want 0.002", mean)
	}
	if st.Listeners["cache"].MeanConnect() != 0 {
		t.Error("mean connect without connects is not 0")
	}
	if st.Reloads["success"] != 2 || st.Reloads["rejected"] != 1 {
		t.Errorf("reloads = %v", st.Reloads)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{thousands(0, 0), "0"},
		{thousands(999, 0), "999"},
		{thousands(1234567.891, 1), "1,234,567.9"},
		{thousands(-1234, 0), "-1,234"},
		{bytesIEC(512), "512 B"},
		{bytesIEC(1536), "1.5 KiB"},
		{bytesIEC(10.5 * 1024 * 1024), "10.5 MiB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	var b bytes.Buffer
	tb := &table{indent: "  ", left: map[int]bool{2: true}}
	tb.heading("head")
	tb.add("a", "1", "x")
	tb.add("longer", "1,000", "yy")
	tb.write(&b)
	want := "head\n  a           1  x\n  longer  1,000  yy\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestEnvironWithout(t *testing.T) {
	got := environWithout([]string{"OUTRIGGER_ADMIN__LISTEN=x", "HOME=/root", "PATH=/bin"}, config.EnvPrefix)
	if strings.Join(got, " ") != "HOME=/root PATH=/bin" {
		t.Fatalf("environWithout = %v", got)
	}
}
