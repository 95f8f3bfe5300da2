package main

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/outrigger/outrigger/internal/testenv"
)

// printSummary prints what the benchmarks measured and what outrigger's
// metrics counted while they ran.
func (d *demo) printSummary(res benchResults) error {
	st, err := gatherStats(d.or.srv.Metrics().Registry)
	if err != nil {
		return err
	}
	w := d.out
	fmt.Fprintf(w, "\n%s\n", heading("Summary"))
	t := &table{indent: "  ", left: map[int]bool{2: true}}

	t.heading(fmt.Sprintf("pgbench %s, through %s (%s)", strings.Join(pgbenchRunArgs[:len(pgbenchRunArgs)-2], " "), listenerAppDB, d.or.srv.ListenerAddr(listenerAppDB)))
	pg := res.pgbench
	t.add("throughput", thousands(pg.TPS, 1), "transactions/s")
	t.add("latency average", fmt.Sprintf("%.3f", pg.LatencyAvgMS), "ms")
	t.add("transactions", thousands(float64(pg.Processed), 0), "")
	if pg.Failed >= 0 {
		t.add("failed transactions", thousands(float64(pg.Failed), 0), fmt.Sprintf("(%.3f %%)", pg.FailedPct))
	} else {
		t.add("failed transactions", "-", "(not reported by this pgbench)")
	}

	t.heading("")
	t.heading(fmt.Sprintf("redis-benchmark %s, through %s (%s)", strings.Join(redisBenchArgs[:len(redisBenchArgs)-1], " "), listenerCache, d.or.srv.ListenerAddr(listenerCache)))
	for _, test := range []string{"SET", "GET"} {
		if v, ok := res.redis[test]; ok {
			t.add(test, thousands(v, 1), "requests/s")
		} else {
			t.add(test, "-", "(not reported)")
		}
	}

	t.heading("")
	t.heading(fmt.Sprintf("outrigger, from its metrics registry (also at http://%s/metrics)", d.or.srv.AdminAddr()))
	t.add("config reloads", thousands(st.Reloads["success"], 0), fmt.Sprintf("succeeded (%s rejected)", thousands(st.Reloads["rejected"], 0)))
	t.write(w)

	lt := &table{indent: "  "}
	lt.add("listener", "connections", "bytes in", "bytes out", "upstream connects", "connect mean", "connect failures")
	for _, name := range st.ListenerNames() {
		l := st.Listeners[name]
		mean := "-"
		if l.Connects > 0 {
			mean = fmt.Sprintf("%.3f ms", l.MeanConnect()*1000)
		}
		lt.add(name, thousands(l.Accepted, 0), bytesIEC(l.BytesIn), bytesIEC(l.BytesOut),
			strconv.FormatUint(l.Connects, 10), mean, thousands(l.ConnectFailures, 0))
	}
	lt.write(w)
	fmt.Fprintln(w, "  (connections: accepted from clients; bytes in: from clients; bytes out: to clients)")
	fmt.Fprintf(w, "\nTook %.1f s so far (pgbench %.1f s with its init, redis-benchmark %.1f s).\n",
		d.since().Seconds(), res.pgElapsed.Seconds(), res.redisElapsed.Seconds())
	return nil
}

// printConnectionStrings tells the user how to reach what is running.
func (d *demo) printConnectionStrings() {
	w := d.out
	appdb := d.or.srv.ListenerAddr(listenerAppDB).String()
	host, port := splitAddr(appdb)
	_, cachePort := splitAddr(d.or.srv.ListenerAddr(listenerCache).String())
	fmt.Fprintf(w, "\n%s\n", heading("Outrigger is up; try it"))
	t := &table{indent: "  ", left: map[int]bool{1: true}}
	t.add("postgres", fmt.Sprintf("psql \"postgres://%s:%s@%s/%s\"",
		testenv.PostgresAppUser, testenv.PostgresAppPassword, appdb, testenv.PostgresAppDatabase))
	t.add("", fmt.Sprintf("PGPASSWORD=%s pgbench -h %s -p %s -U %s -S -T 10 %s",
		testenv.PostgresAppPassword, host, port, testenv.PostgresAppUser, testenv.PostgresAppDatabase))
	cache := "redis-cli -p " + cachePort
	if h, _ := splitAddr(d.or.srv.ListenerAddr(listenerCache).String()); h != "127.0.0.1" {
		cache = fmt.Sprintf("redis-cli -h %s -p %s", h, cachePort)
	}
	t.add("redis", cache)
	t.add("admin", fmt.Sprintf("http://%s/metrics   (also /healthz /readyz /config /pools)", d.or.srv.AdminAddr()))
	t.add("config", d.or.configPath+"   (edits are applied live)")
	t.add("log", d.or.logPath)
	t.write(w)
	fmt.Fprintln(w, "\nPress Ctrl-C to stop everything and clean up.")
}

func heading(s string) string {
	return "== " + s + " " + strings.Repeat("=", max(60-len(s)-4, 3))
}

// thousands formats v with the given decimals and commas between thousands.
func thousands(v float64, decimals int) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', decimals, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// bytesIEC formats a byte count as B, KiB, MiB or GiB.
func bytesIEC(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// splitAddr splits "host:port"; it returns addr and "" if it cannot.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return h, p
}
