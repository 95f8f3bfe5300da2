// Command sidebyside is the side-by-side benchmark harness: it starts a
// throwaway Postgres (pgbench scale 10) and Redis, puts each contestant in
// front of them (direct, HAProxy, PgBouncer or twemproxy, Outrigger, and
// Outrigger with its access log on), runs
// every case interleaved over several rounds, measures the memory each
// proxy spends per idle client, and writes the results: bench/results/
// (results.md, results.json, PNG charts) and BENCHMARKS.md.
//
//	go run ./bench/sidebyside            # full: 3 rounds (make bench)
//	go run ./bench/sidebyside -quick     # 1 round of short runs (make bench-quick)
//	go run ./bench/sidebyside -profile pg-select-c64
//	go run ./bench/sidebyside -cases pg-select-c64 -contestants outrigger-logged \
//		-profile pg-select-c64 -profile-contestant outrigger-logged
//
// See bench/doc.go and BENCHMARKS.md for what the numbers mean.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench"
)

type options struct {
	quick          bool
	rounds         int
	duration       time.Duration
	redisScale     float64
	idle           []int
	out            string
	page           string
	outrigger      string
	profile        string
	profileOf      string
	profileSeconds int
	cases          []string
	contestants    []string
	invokedAs      string
	skipIdle       bool
	render         string
}

func parseFlags() (options, error) {
	var o options
	var idle, cases, contestants string
	flag.BoolVar(&o.quick, "quick", false, "quick mode: 1 round, 3 s pgbench runs, a tenth of the Redis requests (about 3 minutes)")
	flag.IntVar(&o.rounds, "rounds", 0, "rounds of every case (default 3, quick 1)")
	flag.DurationVar(&o.duration, "duration", 0, "length of each pgbench run (default 15s, quick 3s; the 1000-client case runs at least 10s)")
	flag.Float64Var(&o.redisScale, "redis-scale", 0, "multiplier of each redis-benchmark case's request count (default 1, quick 0.1)")
	flag.StringVar(&idle, "idle", "1000,5000", "idle client counts for the memory measurement, ascending")
	flag.BoolVar(&o.skipIdle, "skip-idle", false, "skip the memory measurement")
	flag.StringVar(&o.out, "out", "bench/results", "directory for results.md, results.json and the charts")
	flag.StringVar(&o.page, "page", "BENCHMARKS.md", "the page to write (\"\" for none); its links to the results directory are relative")
	flag.StringVar(&o.outrigger, "outrigger", "bin/outrigger", "the Outrigger binary (make build writes it)")
	flag.StringVar(&o.profile, "profile", "", "capture Outrigger's CPU and allocation profiles while this case runs (a case or row id, e.g. pg-select-c64 or redis-get-c50-p16)")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 15, "length of the profiles")
	flag.StringVar(&o.profileOf, "profile-contestant", bench.Outrigger, "the Outrigger process -profile captures: "+bench.Outrigger+" or "+bench.OutriggerLogged)
	flag.StringVar(&cases, "cases", "", "comma-separated cases to run (ids, row ids, postgres or redis); default all")
	flag.StringVar(&contestants, "contestants", "", "comma-separated contestants ("+strings.Join(allContestants, ",")+"); default all")
	flag.StringVar(&o.invokedAs, "invoked-as", "", "how this run was started, for the report (the Makefile sets it)")
	flag.StringVar(&o.render, "render", "", "run nothing: render results.md, the charts and the page again from this results.json")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	def := func(v, full, quick float64) float64 {
		if v != 0 {
			return v
		}
		if o.quick {
			return quick
		}
		return full
	}
	o.rounds = int(def(float64(o.rounds), 3, 1))
	o.duration = time.Duration(def(float64(o.duration), float64(15*time.Second), float64(3*time.Second)))
	o.redisScale = def(o.redisScale, 1, 0.1)
	for _, f := range strings.Split(idle, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-idle: bad count %q", f)
		}
		o.idle = append(o.idle, n)
	}
	slices.Sort(o.idle)
	o.cases = splitList(cases)
	o.contestants = splitList(contestants)
	for _, c := range o.contestants {
		if !slices.Contains(allContestants, c) {
			return o, fmt.Errorf("-contestants: unknown contestant %q (known: %s)", c, strings.Join(allContestants, ", "))
		}
	}
	if o.rounds < 1 {
		return o, errors.New("-rounds must be at least 1")
	}
	if o.profileOf != bench.Outrigger && o.profileOf != bench.OutriggerLogged {
		return o, fmt.Errorf("-profile-contestant: %q is not %s or %s", o.profileOf, bench.Outrigger, bench.OutriggerLogged)
	}
	if o.invokedAs == "" {
		o.invokedAs = strings.TrimSpace("go run ./bench/sidebyside " + strings.Join(os.Args[1:], " "))
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.render != "" {
		res, err := bench.ReadResults(o.render)
		if err == nil {
			err = write(res, o)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sidebyside:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		stop()
		os.Exit(1)
	}
}

// logf prints progress.
func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// raiseNofile lifts the soft descriptor limit to the hard one. Setting it
// explicitly makes children (the proxies, redis-benchmark) inherit it.
func raiseNofile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return rl.Cur, err
	}
	return rl.Cur, nil
}

// lineups are the contestants of each protocol in run and table order.
var lineups = map[string][]string{
	bench.Postgres: {bench.Direct, bench.HAProxy, bench.PgBouncer, bench.Outrigger, bench.OutriggerLogged},
	bench.Redis:    {bench.Direct, bench.HAProxy, bench.Twemproxy, bench.Outrigger, bench.OutriggerLogged},
}

// allContestants is every contestant, in the order they are started.
var allContestants = []string{bench.Direct, bench.HAProxy, bench.PgBouncer, bench.Twemproxy, bench.Outrigger, bench.OutriggerLogged}

var names = map[string]string{
	bench.Direct: "direct", bench.HAProxy: "HAProxy", bench.PgBouncer: "PgBouncer",
	bench.Twemproxy: "twemproxy", bench.Outrigger: "Outrigger",
	bench.OutriggerLogged: "Outrigger (access log 1 %)",
}

func run(ctx context.Context, o options) error {
	res := &bench.Results{
		Mode: "full", Rounds: o.rounds, Started: time.Now(), Command: o.invokedAs,
		Lineup: map[string][]string{}, Peer: map[string]string{bench.Postgres: bench.PgBouncer, bench.Redis: bench.Twemproxy},
	}
	if o.quick {
		res.Mode = "quick"
	}

	// What runs.
	var cases []benchCase
	for _, c := range allCases {
		if len(o.cases) == 0 || slices.ContainsFunc(o.cases, c.matches) {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		return fmt.Errorf("-cases %v matches no case", o.cases)
	}
	protocols := map[string]bool{}
	for _, c := range cases {
		protocols[c.protocol] = true
		res.Cases = append(res.Cases, c.rows()...)
	}
	for p, ids := range lineups {
		if !protocols[p] {
			continue
		}
		for _, id := range ids {
			if len(o.contestants) == 0 || slices.Contains(o.contestants, id) {
				res.Lineup[p] = append(res.Lineup[p], id)
			}
		}
	}

	nofile, err := raiseNofile()
	if err != nil || nofile < 12000 {
		res.Notes = append(res.Notes, fmt.Sprintf("the open-file limit is %d (%v); the 5000-client cases need about 11000, so they may fail with EMFILE", nofile, err))
	}
	// A protocol whose server or tool is missing is n/a for every
	// contestant; the other protocol still runs.
	dropProtocol := func(p, short string, err error) {
		logf("%s: n/a (%s): %v", bench.ProtocolTitle(p), short, err)
		res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", bench.ProtocolTitle(p), oneLine(err.Error())))
		for _, id := range res.Lineup[p] {
			res.SetUnavailable(p, id, bench.NA{Short: short, Detail: oneLine(err.Error())})
		}
		delete(protocols, p)
	}
	pgbench, err := findPgbench()
	if err != nil && protocols[bench.Postgres] {
		dropProtocol(bench.Postgres, "no pgbench", err)
	}
	redisBenchmark, err := lookPath("redis-benchmark")
	if err != nil && protocols[bench.Redis] {
		dropProtocol(bench.Redis, "no redis-benchmark", err)
	}
	outriggerBin, _ := filepath.Abs(o.outrigger)
	res.Machine = machine(pgbench, outriggerBin)

	tmp, err := os.MkdirTemp("", "outrigger-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	svcUser, err := serviceUser()
	if err != nil {
		return err
	}
	e := &env{tmp: tmp, outrigger: outriggerBin, svcUser: svcUser, nofile: nofile}

	// The servers.
	srv := &servers{}
	defer srv.stop()
	if protocols[bench.Postgres] {
		logf("starting Postgres and loading pgbench scale %d", pgScale)
		if srv.pg, err = startPostgres(ctx, pgbench); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dropProtocol(bench.Postgres, "no Postgres", fmt.Errorf("the Postgres server did not start: %w", err))
		} else {
			res.Machine.Versions["PostgreSQL"] = version(filepath.Join(srv.pg.BinDir, "postgres"), "--version")
			res.Settings = append(res.Settings, fmt.Sprintf("Postgres: max_connections %d, shared_buffers 256MB, fsync off; pgbench scale %d; "+
				"every client logs in as %q with SCRAM-SHA-256", pgMaxConnections, pgScale, pgUser))
		}
	}
	if protocols[bench.Redis] {
		logf("starting Redis")
		if srv.redis, err = startRedis(); err != nil {
			dropProtocol(bench.Redis, "no Redis", fmt.Errorf("the Redis server did not start: %w", err))
		} else {
			res.Settings = append(res.Settings, "Redis: no persistence, maxclients 20000")
		}
	}
	if len(protocols) == 0 {
		return errors.New("neither Postgres nor Redis is available; nothing to measure (scripts/deps.sh installs them)")
	}
	up := upstreams{}
	if srv.pg != nil {
		up.pg = srv.pg.Addr()
	}
	if srv.redis != nil {
		up.redis = srv.redis.Addr
	}
	res.Settings = append(res.Settings, fmt.Sprintf("open-file limit for every process: %d", nofile))
	describeContestants(res, e)

	// Memory first, each proxy started afresh for it.
	if !o.skipIdle && len(o.idle) > 0 {
		if err := idlePhase(ctx, res, e, srv, up, o.idle); err != nil {
			return err
		}
	}

	// The contestants for the load phase.
	insts := map[string]*instance{}
	defer func() {
		for _, in := range insts {
			in.stop()
		}
	}()
	for _, id := range allContestants {
		want := upstreams{}
		for p := range protocols {
			if slices.Contains(res.Lineup[p], id) {
				if p == bench.Postgres {
					want.pg = up.pg
				} else {
					want.redis = up.redis
				}
			}
		}
		if want.pg == "" && want.redis == "" {
			continue
		}
		logf("starting %s", names[id])
		in, err := e.startContestant(ctx, id, want, srv)
		if err != nil {
			na := naFromErr(err)
			logf("  %s: n/a (%s): %v", names[id], na.Short, err)
			for p := range protocols {
				if slices.Contains(res.Lineup[p], id) {
					res.SetUnavailable(p, id, na)
				}
			}
			continue
		}
		if in.pgNA != nil && want.pg != "" {
			logf("  %s postgres: n/a (%s): %s", names[id], in.pgNA.Short, in.pgNA.Detail)
			res.SetUnavailable(bench.Postgres, id, *in.pgNA)
		}
		insts[id] = in
	}

	rn := &runner{pgbench: pgbench, redisBenchmark: redisBenchmark, duration: o.duration, redisScale: o.redisScale, tmp: tmp}
	if srv.pg != nil {
		rn.pgServer = srv.pg.Addr()
	}
	logf("%d round(s) of %d case(s); pgbench runs of %v, redis-benchmark request counts ×%g", o.rounds, len(cases), o.duration, o.redisScale)
	for round := 1; round <= o.rounds; round++ {
		for _, c := range cases {
			for _, id := range res.Lineup[c.protocol] {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if _, na := res.UnavailableFor(c.protocol, id); na {
					continue
				}
				in := insts[id]
				if err := in.alive(); err != nil {
					res.SetUnavailable(c.protocol, id, bench.NA{Short: "exited", Detail: err.Error()})
					res.Notes = append(res.Notes, fmt.Sprintf("%s stopped during round %d: %v", names[id], round, err))
					continue
				}
				runs := rn.run(ctx, c, in.addr[c.protocol], in.cpuPID(), round, id)
				res.Runs = append(res.Runs, runs...)
				for _, r := range runs {
					logf("round %d/%d  %-22s %-10s %s", round, o.rounds, r.Case, names[id], describeRun(r))
				}
			}
		}
	}

	// The profile.
	if o.profile != "" {
		res.Profiles = profilePhase(ctx, o, res, cases, insts, rn)
	}
	res.Finished = time.Now()
	res.Machine.LoadEnd = loadAvg()
	return write(res, o)
}

// naFromErr turns a start failure into a table reason.
func naFromErr(err error) bench.NA {
	if errors.Is(err, errNotInstalled) {
		return bench.NA{Short: "not installed", Detail: err.Error()}
	}
	return bench.NA{Short: "did not start", Detail: oneLine(err.Error())}
}

func describeRun(r bench.Run) string {
	if !r.OK {
		return "n/a: " + r.Error
	}
	s := fmt.Sprintf("%12.0f ops/s  avg %.3f ms", r.OpsPerSec, r.LatAvgMS)
	if r.LatP99MS > 0 {
		s += fmt.Sprintf("  p99 %.3f ms", r.LatP99MS)
	}
	if r.CPUMicrosPerOp > 0 {
		s += fmt.Sprintf("  cpu %s µs/op", bench.FormatCPU(r.CPUMicrosPerOp))
	}
	if r.Error != "" {
		s += "  (" + r.Error + ")"
	}
	return s
}

func describeContestants(res *bench.Results, e *env) {
	v := res.Machine.Versions
	res.Contestants = []bench.ContestantInfo{
		{ID: bench.Direct, Name: names[bench.Direct], Setup: "the client talks to Postgres or Redis itself"},
		{ID: bench.HAProxy, Name: names[bench.HAProxy], Version: v["HAProxy"],
			Setup: fmt.Sprintf("`mode tcp` passthrough, one frontend per protocol, maxconn %d; one server connection per client", e.haproxyMaxconn())},
		{ID: bench.PgBouncer, Name: names[bench.PgBouncer], Version: v["PgBouncer"],
			Setup: fmt.Sprintf("pool_mode transaction, default_pool_size %d, max_client_conn %d, auth_type scram-sha-256 (plain password in auth_file)", pgPoolSize, maxClients)},
		{ID: bench.Twemproxy, Name: names[bench.Twemproxy], Version: v["twemproxy"],
			Setup: fmt.Sprintf("nutcracker, redis: true, one server, server_connections %d (as Outrigger's pool), client_connections %d, preconnect", redisPoolSize, maxClients)},
		{ID: bench.Outrigger, Name: names[bench.Outrigger], Version: v["Outrigger"],
			Setup: fmt.Sprintf("`%s run`; postgres listener: pool.mode transaction, pool.size %d, auth scram-sha-256; redis listener: pool.size %d; max_connections %d; log level warn; metrics on (as always), access log off",
				displayPath(e.outrigger), pgPoolSize, redisPoolSize, maxClients)},
		{ID: bench.OutriggerLogged, Name: names[bench.OutriggerLogged], Version: v["Outrigger"],
			Setup: fmt.Sprintf("the same binary and config as Outrigger, in a process of its own, plus `access_log: {enabled: true, output: <its directory>/access.log, sample_rate: %g, slow_threshold: %s}`; "+
				"its ops/s over Outrigger's is the access log's cost (issue 6); its memory per idle client is not measured apart",
				accessLogSampleRate, accessLogSlowThreshold)},
	}
}

// idlePhase measures memory per idle client for every contestant, each
// started afresh for one protocol so that nothing else it did counts.
func idlePhase(ctx context.Context, res *bench.Results, e *env, srv *servers, up upstreams, counts []int) error {
	for _, p := range []string{bench.Postgres, bench.Redis} {
		if (p == bench.Postgres && up.pg == "") || (p == bench.Redis && up.redis == "") {
			continue // its server is not running
		}
		for _, id := range res.Lineup[p] {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !bench.MeasuresIdle(id) {
				continue
			}
			if id == bench.Direct && p == bench.Postgres {
				for _, n := range counts {
					res.Idle = append(res.Idle, bench.Idle{Protocol: p, Contestant: id, Clients: n,
						Error: fmt.Sprintf("not measured: Postgres runs a backend process per connection, and max_connections is %d", pgMaxConnections)})
				}
				continue
			}
			want := upstreams{}
			if p == bench.Postgres {
				want.pg = up.pg
			} else {
				want.redis = up.redis
			}
			var in *instance
			var err error
			if id == bench.Direct {
				// A fresh redis-server, so the one the load phase uses
				// keeps its data and its RSS stays its own.
				r, lerr := startRedis()
				if lerr != nil {
					err = lerr
				} else {
					in = &instance{id: id, addr: map[string]string{p: r.Addr}, pid: r.PID(), stopFn: func() { _ = r.Stop() }}
				}
			} else {
				in, err = e.startContestant(ctx, id, want, srv)
			}
			if err == nil && in.pgNA != nil && p == bench.Postgres {
				in.stop()
				logf("memory: %s %s: n/a (%s): %s", names[id], p, in.pgNA.Short, in.pgNA.Detail)
				res.SetUnavailable(p, id, *in.pgNA)
				continue
			}
			if err != nil {
				for _, n := range counts {
					res.Idle = append(res.Idle, bench.Idle{Protocol: p, Contestant: id, Clients: n, Error: naFromErr(err).Short + ": " + oneLine(err.Error())})
				}
				continue
			}
			logf("memory: %s %s, up to %d idle clients", names[id], p, counts[len(counts)-1])
			ms := measureIdle(ctx, p, id, in.addr[p], in.pid, counts)
			in.stop()
			for _, m := range ms {
				if m.Error != "" {
					logf("  %d idle: n/a: %s", m.Clients, m.Error)
				} else {
					logf("  %d idle: RSS %d -> %d KiB, %.2f KiB per client", m.Clients, m.BaseKiB, m.RSSKiB, m.PerClientKiB)
				}
			}
			res.Idle = append(res.Idle, ms...)
		}
	}
	return nil
}

func profilePhase(ctx context.Context, o options, res *bench.Results, cases []benchCase, insts map[string]*instance, rn *runner) []bench.Profile {
	var c *benchCase
	for i := range cases {
		if cases[i].matches(o.profile) {
			c = &cases[i]
			break
		}
	}
	fail := func(msg string) []bench.Profile {
		logf("profile: %s", msg)
		return []bench.Profile{{Case: o.profile, Kind: "cpu", Error: msg}}
	}
	if c == nil {
		return fail(fmt.Sprintf("no case %q in this run", o.profile))
	}
	in := insts[o.profileOf]
	if in == nil || in.addr[c.protocol] == "" {
		return fail(fmt.Sprintf("%s does not serve %s in this run", o.profileOf, c.protocol))
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fail(err.Error())
	}
	logf("profile: %s through Outrigger for %d s", c.id, o.profileSeconds)
	return captureProfiles(ctx, in.admin, c.id, o.profileSeconds, o.out, func(wctx context.Context) {
		rn.run(wctx, *c, in.addr[c.protocol], 0, 0, bench.Outrigger)
	})
}

// write writes results.json, results.md, the charts and the page.
func write(res *bench.Results, o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	sum := bench.Summarize(res)
	var redisRows []string
	for _, c := range res.CasesOf(bench.Redis) {
		redisRows = append(redisRows, c.ID)
	}
	trs := bench.Evaluate(bench.DefaultTargets(redisRows), res, sum)
	if err := res.WriteJSON(filepath.Join(o.out, "results.json")); err != nil {
		return err
	}
	var md bytes.Buffer
	bench.WriteResultsMarkdown(&md, res, sum, trs)
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	charts, err := bench.WriteCharts(o.out, res, sum)
	if err != nil {
		res.Notes = append(res.Notes, "charts: "+err.Error())
		logf("charts: %v", err)
	}
	if o.page != "" {
		rel, err := filepath.Rel(filepath.Dir(absOr(o.page)), absOr(o.out))
		if err != nil {
			rel = o.out
		}
		var page bytes.Buffer
		bench.WriteBenchmarksPage(&page, res, sum, trs, bench.PageOptions{ResultsDir: filepath.ToSlash(rel), Charts: charts})
		if err := os.WriteFile(o.page, page.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Println()
	fmt.Print(md.String())
	fmt.Println()
	logf("wrote %s (results.md, results.json, %d charts)%s", o.out, len(charts), map[bool]string{true: " and " + o.page, false: ""}[o.page != ""])
	return nil
}

// displayPath shows p relative to the working directory when it is inside
// it (bin/outrigger).
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
