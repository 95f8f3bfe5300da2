package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePgbench(t *testing.T) {
	tests := []struct {
		name      string
		fixture   string
		wantTPS   float64
		wantLat   float64
		wantProc  int64
		wantErr   []string // substrings; nil: no error
		wantAbort int
	}{
		{name: "select only, 8 clients", fixture: "pgbench-select-c8.txt", wantTPS: 53587.119019, wantLat: 0.149, wantProc: 159115},
		{name: "connect per transaction", fixture: "pgbench-connect-select-c16.txt", wantTPS: 222.804183, wantLat: 71.812, wantProc: 447},
		{name: "tpc-b", fixture: "pgbench-tpcb-c32.txt", wantTPS: 5623.350253, wantLat: 5.691, wantProc: 10784},
		{name: "direct at 1000 clients runs out of connection slots", fixture: "pgbench-c1000-direct-too-many.txt",
			wantErr: []string{"FATAL: remaining connection slots are reserved", "(could not create connection for client 598)"}},
		{name: "prepared through pgbouncer aborts", fixture: "pgbench-prepared-pgbouncer-aborted.txt", wantTPS: 26365.476402,
			wantLat: 0.607, wantProc: 50815, wantAbort: 13,
			wantErr: []string{"run aborted (13 clients aborted)", `ERROR: prepared statement "P_0" already exists`}},
		{name: "1000 clients still connecting when the time is up", fixture: "pgbench-c1000-none-processed.txt",
			wantErr: []string{"no transaction completed within the duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParsePgbench(readFixture(t, tt.fixture))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("no error, want one with %q", tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
			}
			if r.TPS != tt.wantTPS || r.LatencyAvgMS != tt.wantLat || r.Processed != tt.wantProc || r.Aborted != tt.wantAbort {
				t.Errorf("got tps %v lat %v processed %d aborted %d, want %v %v %d %d",
					r.TPS, r.LatencyAvgMS, r.Processed, r.Aborted, tt.wantTPS, tt.wantLat, tt.wantProc, tt.wantAbort)
			}
		})
	}
}

func TestParsePgbenchFailedTransactions(t *testing.T) {
	out := strings.Replace(readFixture(t, "pgbench-tpcb-c32.txt"),
		"number of failed transactions: 0 (0.000%)", "number of failed transactions: 3 (0.028%)", 1)
	if _, err := ParsePgbench(out); err == nil || !strings.Contains(err.Error(), "3 failed transactions") {
		t.Fatalf("error %v, want 3 failed transactions", err)
	}
}

func TestReadPgbenchLog(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr string
	}{
		{name: "plain", in: "0 1 1021 0 1795656487 306970\n1 1 1012 0 1795656487 306980\n", want: []float64{1.021, 1.012}},
		{name: "with schedule lag and retries", in: "3 7 250 0 1795656487 306970 12 0\n", want: []float64{0.25}},
		{name: "failed and skipped left out", in: "0 1 failed 0 1795656487 306970\n0 2 skipped 0 1795656487 306971\n0 3 500 0 1795656487 306972\n", want: []float64{0.5}},
		{name: "blank lines", in: "\n0 1 1000 0 1 2\n\n", want: []float64{1}},
		{name: "short line", in: "0 1 1000\n", wantErr: "3 fields"},
		{name: "bad latency", in: "0 1 x 0 1 2\n", wantErr: `latency "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPgbenchLog(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-9 {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestPgbenchLogFixturesP99(t *testing.T) {
	var all []float64
	for _, f := range []string{"pgbench-log-thread0.log", "pgbench-log-thread1.log"} {
		lat, err := ReadPgbenchLog(strings.NewReader(readFixture(t, f)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, lat...)
	}
	if len(all) != 600 {
		t.Fatalf("%d latencies, want 600", len(all))
	}
	p99 := Percentile(all, 99)
	// The 594th of 600 sorted values; it must lie between the median and
	// the maximum.
	if p99 < Median(all) || p99 > all[len(all)-1] {
		t.Fatalf("p99 %v outside [median %v, max %v]", p99, Median(all), all[len(all)-1])
	}
	above := 0
	for _, v := range all {
		if v > p99 {
			above++
		}
	}
	if above > 6 {
		t.Fatalf("%d of 600 above p99 %v, want at most 6", above, p99)
	}
}

func TestParseRedisCSV(t *testing.T) {
	tests := []struct {
		name    string
		stdout  string
		stderr  string
		want    []RedisTest
		wantErr string
	}{
		{name: "set and get direct", stdout: readFixture(t, "redis-benchmark-setget-c50.csv"),
			want: []RedisTest{{"SET", 138888.89, 0.203, 0.191, 0.503}, {"GET", 129032.26, 0.206, 0.199, 0.359}}},
		{name: "four tests through twemproxy", stdout: readFixture(t, "redis-benchmark-twemproxy-4tests.csv"),
			stderr: readFixture(t, "redis-benchmark-twemproxy-4tests.stderr"),
			want: []RedisTest{{"SET", 126582.27, 0.349, 0.335, 0.687}, {"GET", 138888.89, 0.325, 0.327, 0.567},
				{"LPUSH", 120481.93, 0.318, 0.311, 0.711}, {"LPOP", 93023.26, 0.362, 0.351, 0.639}}},
		{name: "5000 clients", stdout: readFixture(t, "redis-benchmark-c5000.csv"),
			want: []RedisTest{{"SET", 64432.99, 73.475, 76.287, 88.191}, {"GET", 69013.11, 68.827, 67.711, 92.159}}},
		{name: "out of descriptors", stdout: readFixture(t, "redis-benchmark-emfile.csv"), stderr: readFixture(t, "redis-benchmark-emfile.stderr"),
			wantErr: "Can't create socket: Too many open files"},
		{name: "connection refused", stdout: "", stderr: "Could not connect to Redis at 127.0.0.1:1: Connection refused\n",
			wantErr: "Could not connect to Redis at 127.0.0.1:1: Connection refused"},
		{name: "nothing at all", wantErr: "printed no results"},
		{name: "progress only", stderr: "SET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r", wantErr: "printed no results"},
		{name: "row before header", stdout: `"SET","1","2","3","4","5","6","7"` + "\n", wantErr: "before the header"},
		{name: "bad number", stdout: `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"` + "\n" +
			`"SET","x","2","3","4","5","6","7"` + "\n", wantErr: "test SET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRedisCSV(tt.stdout, tt.stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("test %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	kb, err := parseVmRSS(readFixture(t, "proc-status.txt"), 1)
	if err != nil || kb != 1760 {
		t.Fatalf("got %d, %v; want 1760", kb, err)
	}
	if _, err := parseVmRSS("Name:\tx\n", 1); err == nil {
		t.Fatal("no error without VmRSS")
	}
	if kb, err := RSSKiB(os.Getpid()); err != nil || kb <= 0 {
		t.Fatalf("own RSS: %d, %v", kb, err)
	}
}
