package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Protocols a case and a contestant speak.
const (
	Postgres = "postgres"
	Redis    = "redis"
)

// Contestant ids. Every table, chart and target refers to contestants by
// these.
const (
	Direct    = "direct"
	HAProxy   = "haproxy"
	PgBouncer = "pgbouncer"
	Twemproxy = "twemproxy"
	Outrigger = "outrigger"
	// OutriggerLogged is Outrigger with the same binary and config but its
	// access log on (1 % of requests sampled to a file): the cost of the
	// access log is its throughput against Outrigger's in the same run.
	OutriggerLogged = "outrigger-logged"
)

// MeasuresIdle reports whether the memory per idle client is measured for
// contestant id. OutriggerLogged is not: an idle client writes no access
// log line, so its figure would be Outrigger's again.
func MeasuresIdle(id string) bool { return id != OutriggerLogged }

// Results is everything one run of the harness measured: what ran, on what,
// and every individual measurement. It is written to results.json as is, and
// the tables, charts and targets are computed from it (see Summarize).
type Results struct {
	Mode     string    `json:"mode"` // "full" or "quick"
	Rounds   int       `json:"rounds"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Command  string    `json:"command"` // how this run was started
	Machine  Machine   `json:"machine"`

	// Settings describes the servers and the contestants' configuration in a
	// few words each (pool sizes, modes, limits), for the report.
	Settings []string `json:"settings"`

	Cases       []CaseInfo       `json:"cases"`
	Contestants []ContestantInfo `json:"contestants"`
	// Lineup is the contestants of each protocol in table order: direct,
	// HAProxy, the peer, Outrigger, Outrigger with its access log on.
	Lineup map[string][]string `json:"lineup"`
	// Peer is the pooler users would otherwise pick, per protocol.
	Peer map[string]string `json:"peer"`
	// Unavailable holds, by "protocol/contestant", why a contestant took no
	// part for that protocol (not installed, failed to start, not built).
	Unavailable map[string]NA `json:"unavailable,omitempty"`

	Runs     []Run     `json:"runs"`
	Idle     []Idle    `json:"idle"`
	Profiles []Profile `json:"profiles,omitempty"`
	// Notes are run-wide remarks (a contestant stopped mid-run, a limit
	// that could not be raised).
	Notes []string `json:"notes,omitempty"`
}

// CaseInfo is one row of the results: a pgbench run, or one test of a
// redis-benchmark run.
type CaseInfo struct {
	ID       string `json:"id"` // "pg-select-c64", "redis-get-c50-p16"
	Protocol string `json:"protocol"`
	Title    string `json:"title"`   // "-S simple, 64 clients"
	Command  string `json:"command"` // the tool's arguments, without address and duration
	Clients  int    `json:"clients"`
}

// ContestantInfo names a contestant and says which version ran.
type ContestantInfo struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// Setup is how it was configured, in one line.
	Setup string `json:"setup"`
}

// NA says why there is no number: Short goes in the table cell ("not
// built"), Detail in the footnote.
type NA struct {
	Short  string `json:"short"`
	Detail string `json:"detail"`
}

// Run is one measurement: one case, one contestant, one round.
type Run struct {
	Round      int     `json:"round"`
	Case       string  `json:"case"`
	Contestant string  `json:"contestant"`
	OK         bool    `json:"ok"`
	OpsPerSec  float64 `json:"ops_per_sec,omitempty"`
	LatAvgMS   float64 `json:"lat_avg_ms,omitempty"`
	LatP99MS   float64 `json:"lat_p99_ms,omitempty"` // 0: unknown
	Error      string  `json:"error,omitempty"`
	Seconds    float64 `json:"seconds"` // wall time of the tool
	// Ops is how many operations the tool reported (pgbench's transactions
	// processed; the requests of a redis-benchmark test); 0: unknown.
	Ops int64 `json:"ops,omitempty"`
	// CPUSeconds is the CPU time (user + system, all threads, from
	// /proc/PID/stat) the contestant's process used while the tool ran; 0
	// for direct, which is no process of the harness's, and when unknown.
	// The rows of one redis-benchmark run share one reading, split in
	// proportion to their operations (see ShareCPU).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// CPUMicrosPerOp is CPUSeconds in µs per operation; the rows of one
	// redis-benchmark run have the same, their reading over all their
	// operations. 0: unknown.
	CPUMicrosPerOp float64 `json:"cpu_us_per_op,omitempty"`
}

// Idle is one reading of a contestant's memory with Clients idle clients
// connected, against its reading with none.
type Idle struct {
	Protocol     string  `json:"protocol"`
	Contestant   string  `json:"contestant"`
	Clients      int     `json:"clients"`
	BaseKiB      int64   `json:"base_kib,omitempty"` // VmRSS with no client
	RSSKiB       int64   `json:"rss_kib,omitempty"`  // VmRSS with Clients idle clients
	PerClientKiB float64 `json:"per_client_kib,omitempty"`
	Error        string  `json:"error,omitempty"`
}

// Profile is a pprof file captured from Outrigger during a case.
type Profile struct {
	Case    string `json:"case"`
	Kind    string `json:"kind"` // "cpu", "allocs"
	Path    string `json:"path"` // relative to the results directory
	Seconds int    `json:"seconds"`
	Error   string `json:"error,omitempty"`
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	Kernel   string            `json:"kernel"`
	OS       string            `json:"os"`
	Go       string            `json:"go"`
	LoadAvg  string            `json:"loadavg_at_start"`
	LoadEnd  string            `json:"loadavg_at_end,omitempty"`
	Versions map[string]string `json:"versions"` // tool -> version line
}

// Contestant returns the info of contestant id, or one with just the id.
func (r *Results) Contestant(id string) ContestantInfo {
	for _, c := range r.Contestants {
		if c.ID == id {
			return c
		}
	}
	return ContestantInfo{ID: id, Name: id}
}

// Case returns the info of case id, and whether there is one.
func (r *Results) Case(id string) (CaseInfo, bool) {
	for _, c := range r.Cases {
		if c.ID == id {
			return c, true
		}
	}
	return CaseInfo{}, false
}

// CasesOf returns the cases of protocol p in their order.
func (r *Results) CasesOf(p string) []CaseInfo {
	var out []CaseInfo
	for _, c := range r.Cases {
		if c.Protocol == p {
			out = append(out, c)
		}
	}
	return out
}

// SetUnavailable records why contestant took no part for protocol.
func (r *Results) SetUnavailable(protocol, contestant string, na NA) {
	if r.Unavailable == nil {
		r.Unavailable = map[string]NA{}
	}
	r.Unavailable[protocol+"/"+contestant] = na
}

// UnavailableFor returns why contestant took no part for protocol, if it
// did not.
func (r *Results) UnavailableFor(protocol, contestant string) (NA, bool) {
	na, ok := r.Unavailable[protocol+"/"+contestant]
	return na, ok
}

// WriteJSON writes r, indented, to path.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResults reads a results.json written by WriteJSON.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
