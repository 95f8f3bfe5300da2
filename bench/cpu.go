package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// clockTicksPerSecond is the unit of utime and stime in /proc/PID/stat:
// USER_HZ, what sysconf(_SC_CLK_TCK) returns. The kernel fixes it at 100 in
// its ABI on every architecture Go runs on under Linux; no module in
// go.mod reads it (golang.org/x/sys/unix has no sysconf, and
// prometheus/procfs hardcodes 100 as well).
const clockTicksPerSecond = 100

// ProcCPUSeconds reads the CPU time process pid has used so far, user plus
// system, over all its threads, from /proc/PID/stat. The kernel counts it
// in clock ticks, so a reading is good to 10 ms.
func ProcCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseProcStatCPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ticks) / clockTicksPerSecond, nil
}

// parseProcStatCPU returns utime+stime, in clock ticks, from the one line
// of /proc/PID/stat: "pid (comm) state ppid ... utime stime ...". comm
// may hold spaces and parentheses, so the fields are counted from after
// the last ')': state is the first there (field 3 of proc(5)), utime the
// 12th (field 14) and stime the 13th (field 15).
func parseProcStatCPU(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' after the command name in %q", abbrev(stat))
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// CPUMicrosPerOp is cpuSeconds spread over ops operations, in µs of CPU
// per operation; NaN when either is not positive.
func CPUMicrosPerOp(cpuSeconds, ops float64) float64 {
	if !(cpuSeconds > 0) || !(ops > 0) {
		return math.NaN()
	}
	return cpuSeconds * 1e6 / ops
}

// ops is how many operations run did: what the tool reported (Ops), else
// its rate times its wall time.
func (r Run) ops() float64 {
	if r.Ops > 0 {
		return float64(r.Ops)
	}
	return r.OpsPerSec * r.Seconds
}

// ShareCPU records cpuSeconds, the CPU time the contestant process used
// over one run of a benchmark tool, in runs, the rows that tool run
// yielded. A pgbench run yields one row, which gets it all. A
// redis-benchmark run tests several commands (SET, GET) one after the
// other with one reading of the CPU around them all, so the reading cannot
// be told apart per command: the CPU is divided by the total operations of
// all its tests, every row gets that same µs per op, and each row's
// CPUSeconds is its share in proportion to its operations (so the rows
// still add up to the reading). Nothing is recorded when a row failed
// (its part of the CPU cannot be taken out), when a row's operations are
// unknown, or when cpuSeconds is negative (the process was replaced).
func ShareCPU(runs []Run, cpuSeconds float64) {
	if len(runs) == 0 || cpuSeconds < 0 {
		return
	}
	total := 0.0
	for _, r := range runs {
		if !r.OK || !(r.ops() > 0) {
			return
		}
		total += r.ops()
	}
	perOp := CPUMicrosPerOp(cpuSeconds, total)
	for i := range runs {
		runs[i].CPUSeconds = cpuSeconds * runs[i].ops() / total
		runs[i].CPUMicrosPerOp = 0
		if !math.IsNaN(perOp) {
			runs[i].CPUMicrosPerOp = perOp
		}
	}
}

// FormatCPU renders µs of CPU per operation with about three significant
// digits, "–" when unknown.
func FormatCPU(us float64) string { return fmtMS(us) }
