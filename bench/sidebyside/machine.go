package main

import (
	"os"
	"runtime"
	"strings"

	"github.com/outrigger/outrigger/bench"
)

// machine describes this machine and the versions of every tool and
// contestant.
func machine(pgbench, outrigger string) bench.Machine {
	m := bench.Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadAvg(), Versions: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	tools := []struct {
		name string
		path string
		args []string
	}{
		{"PostgreSQL", "", nil},
		{"pgbench", pgbench, []string{"--version"}},
		{"PgBouncer", "pgbouncer", []string{"--version"}},
		{"HAProxy", "haproxy", []string{"-v"}},
		{"twemproxy", "nutcracker", []string{"--version"}},
		{"Redis", "redis-server", []string{"--version"}},
		{"redis-benchmark", "redis-benchmark", []string{"--version"}},
		{"Outrigger", outrigger, []string{"version"}},
	}
	for _, t := range tools {
		if t.path == "" {
			continue
		}
		p, err := lookPath(t.path)
		if err != nil {
			m.Versions[t.name] = "not installed"
			continue
		}
		m.Versions[t.name] = version(p, t.args...)
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
