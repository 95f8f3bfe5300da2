package bench

import (
	"math"
	"os"
	"strings"
	"testing"
)

// A /proc/PID/stat line as the kernel writes it (proc(5)), utime 1234 and
// stime 567 ticks, with the command name in parentheses.
const procStatFixture = "%s R 4242 4243 4242 34816 4243 4194304 97 0 0 0 1234 567 0 0 20 0 9 0 123456 5685248 440 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n"

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name, head string
	}{
		{"plain name", "4244 (outrigger)"},
		{"name with spaces", "4244 (nut cracker 2)"},
		// The kernel does not escape comm, so it can hold ') ' and look like
		// the end of the name followed by fields.
		{"name with parentheses", "4244 (a) 1 2 (b))"},
		{"name that is only a ')'", "4244 ())"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := strings.Replace(procStatFixture, "%s", tt.head, 1)
			got, err := parseProcStatCPU(line)
			if err != nil || got != 1234+567 {
				t.Fatalf("got %d, %v; want %d", got, err, 1234+567)
			}
		})
	}
	for _, bad := range []string{
		"",
		"4244 outrigger R 1 2 3",         // no parentheses
		"4244 (outrigger) R 1 2 3 4 5 6", // cut short
		strings.Replace(strings.Replace(procStatFixture, "%s", "1 (x)", 1), " 1234 ", " x ", 1),
	} {
		if n, err := parseProcStatCPU(bad); err == nil {
			t.Errorf("parseProcStatCPU(%q) = %d, want an error", bad, n)
		}
	}
}

func TestProcCPUSecondsOwnProcess(t *testing.T) {
	before, err := ProcCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn a few clock ticks of CPU.
	x := 0.0
	for i := 0; i < 50_000_000; i++ {
		x += math.Sqrt(float64(i))
	}
	after, err := ProcCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before < 0 || after < before || x == 0 {
		t.Fatalf("CPU went from %v to %v s", before, after)
	}
	if _, err := ProcCPUSeconds(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
}

func TestCPUMicrosPerOp(t *testing.T) {
	if got := CPUMicrosPerOp(1.78, 100_000); math.Abs(got-17.8) > 1e-9 {
		t.Errorf("1.78 s over 100000 ops = %v µs/op, want 17.8", got)
	}
	for _, c := range [][2]float64{{0, 100}, {1, 0}, {-1, 100}, {1, math.NaN()}} {
		if got := CPUMicrosPerOp(c[0], c[1]); !math.IsNaN(got) {
			t.Errorf("CPUMicrosPerOp(%v, %v) = %v, want NaN", c[0], c[1], got)
		}
	}
}

func TestShareCPU(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

	t.Run("pgbench: one row, the ops it reported", func(t *testing.T) {
		runs := []Run{{OK: true, OpsPerSec: 28696, Seconds: 15.2, Ops: 430440}}
		ShareCPU(runs, 7.66)
		if !near(runs[0].CPUSeconds, 7.66) || !near(runs[0].CPUMicrosPerOp, 7.66e6/430440) {
			t.Fatalf("got %+v", runs[0])
		}
	})
	t.Run("ops unknown: rate times wall time", func(t *testing.T) {
		runs := []Run{{OK: true, OpsPerSec: 20000, Seconds: 3}}
		ShareCPU(runs, 1.2)
		if !near(runs[0].CPUMicrosPerOp, 20) { // 1.2 s over 60000 ops
			t.Fatalf("got %+v", runs[0])
		}
	})
	t.Run("redis-benchmark: the tests share one reading", func(t *testing.T) {
		runs := []Run{
			{Case: "redis-set-c50", OK: true, OpsPerSec: 100000, Seconds: 1, Ops: 100000},
			{Case: "redis-get-c50", OK: true, OpsPerSec: 150000, Seconds: 1, Ops: 300000},
		}
		ShareCPU(runs, 2) // 2 s over 400000 ops: 5 µs each
		for _, r := range runs {
			if !near(r.CPUMicrosPerOp, 5) {
				t.Errorf("%s: %v µs/op, want 5", r.Case, r.CPUMicrosPerOp)
			}
		}
		if !near(runs[0].CPUSeconds, 0.5) || !near(runs[1].CPUSeconds, 1.5) {
			t.Errorf("shares %v + %v, want 0.5 + 1.5", runs[0].CPUSeconds, runs[1].CPUSeconds)
		}
	})
	t.Run("a failed row: nothing recorded", func(t *testing.T) {
		runs := []Run{{OK: true, Ops: 1000, OpsPerSec: 1000, Seconds: 1}, {Error: "redis-benchmark reported no GET result"}}
		ShareCPU(runs, 1)
		if runs[0].CPUSeconds != 0 || runs[0].CPUMicrosPerOp != 0 {
			t.Fatalf("got %+v", runs[0])
		}
	})
	t.Run("less than a tick: CPU 0, per op unknown", func(t *testing.T) {
		runs := []Run{{OK: true, Ops: 1000, OpsPerSec: 1000, Seconds: 1}}
		ShareCPU(runs, 0)
		if runs[0].CPUMicrosPerOp != 0 {
			t.Fatalf("got %+v", runs[0])
		}
	})
}

func TestSummarizeCPU(t *testing.T) {
	s := Summarize(sampleResults())
	row := s.Row("redis-get-c50")
	if st := row.Stat(Direct); !math.IsNaN(st.CPUMicrosPerOp) {
		t.Errorf("direct has CPU %v µs/op, want none", st.CPUMicrosPerOp)
	}
	// 6 s over 3*v ops per round, v = 120000, 125000, 118000: median 2e6/120000.
	if st := row.Stat(Outrigger); math.Abs(st.CPUMicrosPerOp-2e6/120000) > 1e-9 {
		t.Errorf("Outrigger: %v µs/op, want %v", st.CPUMicrosPerOp, 2e6/120000)
	}
	if got := FormatCPU(2e6 / 120000); got != "16.7" {
		t.Errorf("FormatCPU = %q, want 16.7", got)
	}
}
