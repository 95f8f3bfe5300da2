package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench"
	"github.com/outrigger/outrigger/internal/testenv"
)

// Pool sizes the issue fixes for the poolers.
const (
	pgPoolSize    = 20
	redisPoolSize = 4
	// maxClients is what every proxy is told to accept: more than the 5000
	// idle clients plus the harness's own probes.
	maxClients = 12000
)

// startTimeout bounds how long a contestant may take to serve.
const startTimeout = 20 * time.Second

// instance is one running contestant: where it listens for each protocol
// and which process to read memory from.
type instance struct {
	id    string
	addr  map[string]string // protocol -> "127.0.0.1:port"
	proc  *testenv.Process  // nil for direct
	pid   int               // whose RSS is read
	admin string            // Outrigger's admin address
	// pgNA is set when Outrigger runs without its postgres listener.
	pgNA *bench.NA
	// stopFn, when set, stops a server the instance owns (a fresh Redis).
	stopFn func()
}

func (in *instance) stop() {
	if in == nil {
		return
	}
	if in.proc != nil {
		_ = in.proc.Stop()
	}
	if in.stopFn != nil {
		in.stopFn()
	}
}

// cpuPID is the process whose CPU time counts as the contestant's: its
// own, or 0 for direct, whose pid is the server's and no contestant's.
func (in *instance) cpuPID() int {
	if in.proc == nil {
		return 0
	}
	return in.pid
}

// alive reports whether the contestant's process still runs.
func (in *instance) alive() error {
	if in.proc == nil || !in.proc.Exited() {
		return nil
	}
	return fmt.Errorf("%s exited (%v); log tail: %s", in.id, in.proc.WaitErr(), in.proc.LogTail(600))
}

// upstreams is what contestants sit in front of.
type upstreams struct {
	pg, redis string // "" when that protocol is not wanted
}

// env holds what every starter needs.
type env struct {
	tmp       string
	outrigger string // path of the binary
	svcUser   *syscall.Credential
	nofile    uint64
}

// errNotInstalled marks a missing binary.
var errNotInstalled = errors.New("not installed")

// startContestant starts contestant id in front of up. direct needs no
// process.
func (e *env) startContestant(ctx context.Context, id string, up upstreams, srv *servers) (*instance, error) {
	switch id {
	case bench.Direct:
		in := &instance{id: id, addr: map[string]string{}}
		if up.pg != "" {
			in.addr[bench.Postgres] = up.pg
			in.pid = srv.pg.PID()
		}
		if up.redis != "" {
			in.addr[bench.Redis] = up.redis
			in.pid = srv.redis.PID()
		}
		return in, nil
	case bench.HAProxy:
		return e.startHAProxy(ctx, up)
	case bench.PgBouncer:
		return e.startPgBouncer(ctx, up)
	case bench.Twemproxy:
		return e.startTwemproxy(ctx, up)
	case bench.Outrigger:
		return e.startOutrigger(ctx, up, false)
	case bench.OutriggerLogged:
		return e.startOutrigger(ctx, up, true)
	}
	return nil, fmt.Errorf("unknown contestant %q", id)
}

func freeAddr() (string, error) {
	port, err := testenv.PickFreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// newDir makes a directory for one contestant instance.
func (e *env) newDir(name string) (string, error) {
	dir, err := os.MkdirTemp(e.tmp, name+"-*")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// waitServing waits until every probe passes, or the process exits, or the
// timeout passes.
func waitServing(ctx context.Context, p *testenv.Process, probes map[string]func(context.Context) error) error {
	deadline := time.Now().Add(startTimeout)
	for name, probe := range probes {
		var last error
		for {
			if p.Exited() {
				return fmt.Errorf("exited (%v) before serving %s: %s", p.WaitErr(), name, p.LogTail(800))
			}
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			last = probe(pctx)
			cancel()
			if last == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s not serving after %v: %v; log tail: %s", name, startTimeout, last, p.LogTail(800))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func probesFor(addr map[string]string) map[string]func(context.Context) error {
	probes := map[string]func(context.Context) error{}
	if a, ok := addr[bench.Postgres]; ok {
		probes["postgres on "+a] = func(ctx context.Context) error { return pgPing(ctx, a) }
	}
	if a, ok := addr[bench.Redis]; ok {
		probes["redis on "+a] = func(ctx context.Context) error { return redisPing(ctx, a) }
	}
	return probes
}

// redisPing sends PING and wants +PONG.
func redisPing(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// lookPath finds a tool on PATH, or in /usr/sbin and /sbin, where Debian
// puts daemons and which a non-root PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found on PATH or in /usr/sbin (scripts/deps.sh bench installs it)", errNotInstalled, name)
}

// haproxyMaxconn fits two descriptors per connection (client and server)
// into the descriptor limit.
func (e *env) haproxyMaxconn() int {
	return int(min(uint64(maxClients), (e.nofile-200)/2))
}

func (e *env) startHAProxy(ctx context.Context, up upstreams) (*instance, error) {
	bin, err := lookPath("haproxy")
	if err != nil {
		return nil, err
	}
	dir, err := e.newDir("haproxy")
	if err != nil {
		return nil, err
	}
	in := &instance{id: bench.HAProxy, addr: map[string]string{}}
	maxconn := e.haproxyMaxconn()
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    maxconn %d\n\ndefaults\n    mode tcp\n    maxconn %d\n", maxconn, maxconn)
	b.WriteString("    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n")
	for _, fe := range []struct{ proto, upstream string }{{bench.Postgres, up.pg}, {bench.Redis, up.redis}} {
		if fe.upstream == "" {
			continue
		}
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		in.addr[fe.proto] = addr
		fmt.Fprintf(&b, "\nfrontend %s\n    bind %s\n    default_backend %s\n", fe.proto, addr, fe.proto)
		fmt.Fprintf(&b, "\nbackend %s\n    server s1 %s\n", fe.proto, fe.upstream)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	p, err := testenv.StartProcess(testenv.ProcessSpec{Name: "haproxy", Path: bin, Args: []string{"-db", "-f", cfg}, Dir: dir,
		LogPath: filepath.Join(dir, "haproxy.log"), StopSignal: syscall.SIGTERM})
	if err != nil {
		return nil, err
	}
	in.proc, in.pid = p, p.PID()
	if err := waitServing(ctx, p, probesFor(in.addr)); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

func (e *env) startPgBouncer(ctx context.Context, up upstreams) (*instance, error) {
	bin, err := lookPath("pgbouncer")
	if err != nil {
		return nil, err
	}
	dir, err := e.newDir("pgbouncer")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	uhost, uport, _ := net.SplitHostPort(up.pg)
	ini := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]s dbname=%[1]s

[pgbouncer]
listen_addr = %[4]s
listen_port = %[5]s
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[6]s
pool_mode = transaction
default_pool_size = %[7]d
max_client_conn = %[8]d
max_db_connections = 0
logfile = %[9]s
pidfile =
log_connections = 0
log_disconnections = 0
`, pgDatabase, uhost, uport, host, port, filepath.Join(dir, "userlist.txt"), pgPoolSize, maxClients, filepath.Join(dir, "pgbouncer.log"))
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, err
	}
	// A plain password lets PgBouncer do SCRAM with the client and with
	// the server.
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), fmt.Appendf(nil, "%q %q\n", pgUser, pgPassword), 0o600); err != nil {
		return nil, err
	}
	if err := chownTree(dir, e.svcUser); err != nil {
		return nil, err
	}
	p, err := testenv.StartProcess(testenv.ProcessSpec{Name: "pgbouncer", Path: bin, Args: []string{filepath.Join(dir, "pgbouncer.ini")}, Dir: dir,
		Cred: e.svcUser, LogPath: filepath.Join(dir, "stderr.log"), StopSignal: syscall.SIGTERM})
	if err != nil {
		return nil, err
	}
	in := &instance{id: bench.PgBouncer, addr: map[string]string{bench.Postgres: addr}, proc: p, pid: p.PID()}
	if err := waitServing(ctx, p, probesFor(in.addr)); err != nil {
		in.stop()
		return nil, fmt.Errorf("%w (pgbouncer.log: %s)", err, testenv.FileTail(filepath.Join(dir, "pgbouncer.log"), 600))
	}
	return in, nil
}

func (e *env) startTwemproxy(ctx context.Context, up upstreams) (*instance, error) {
	bin, err := lookPath("nutcracker")
	if err != nil {
		return nil, err
	}
	dir, err := e.newDir("nutcracker")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	stats, err := testenv.PickFreePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`bench:
  listen: %s
  hash: fnv1a_64
  distribution: ketama
  redis: true
  preconnect: true
  auto_eject_hosts: false
  server_connections: %d
  client_connections: %d
  servers:
    - %s:1
`, addr, redisPoolSize, maxClients, up.redis)
	cfg := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := testenv.StartProcess(testenv.ProcessSpec{Name: "nutcracker", Path: bin,
		Args: []string{"-c", cfg, "-s", strconv.Itoa(stats), "-a", "127.0.0.1", "-o", filepath.Join(dir, "nutcracker.log"), "-v", "4"},
		Dir:  dir, LogPath: filepath.Join(dir, "stderr.log"), StopSignal: syscall.SIGTERM})
	if err != nil {
		return nil, err
	}
	in := &instance{id: bench.Twemproxy, addr: map[string]string{bench.Redis: addr}, proc: p, pid: p.PID()}
	if err := waitServing(ctx, p, probesFor(in.addr)); err != nil {
		in.stop()
		return nil, fmt.Errorf("%w (nutcracker.log: %s)", err, testenv.FileTail(filepath.Join(dir, "nutcracker.log"), 600))
	}
	return in, nil
}

// Access log settings of the OutriggerLogged contestant.
const (
	accessLogSampleRate    = 0.01
	accessLogSlowThreshold = "1s"
)

// outriggerConfig renders Outrigger's config: a postgres listener in
// transaction mode with a pool of 20 and a redis listener with a pool of 4,
// each when its upstream is set. accessLog, when not "", turns the access
// log on, written to that file with 1 % of requests sampled.
func outriggerConfig(admin, pgListen, redisListen, accessLog string, up upstreams) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin: {listen: %q}\nlog: {level: warn, format: json}\nshutdown: {drain_timeout: 1s}\nreload: {watch: false}\n", admin)
	if accessLog != "" {
		fmt.Fprintf(&b, "access_log: {enabled: true, output: %q, sample_rate: %g, slow_threshold: %s}\n",
			accessLog, accessLogSampleRate, accessLogSlowThreshold)
	}
	if up.pg != "" {
		fmt.Fprintf(&b, `postgres:
  - name: benchpg
    listen: %q
    max_connections: %d
    upstream: {address: %q}
    pool: {mode: transaction, size: %d, max_clients: %d}
    auth:
      method: scram-sha-256
      users:
        - {name: %s, password: %s}
`, pgListen, maxClients, up.pg, pgPoolSize, maxClients, pgUser, pgPassword)
	}
	if up.redis != "" {
		fmt.Fprintf(&b, `redis:
  - name: benchredis
    listen: %q
    max_connections: %d
    upstream: {address: %q}
    pool: {size: %d}
`, redisListen, maxClients, up.redis, redisPoolSize)
	}
	return b.String()
}

// startOutrigger runs the binary with both listeners, and with its access
// log written to access.log in its directory when logged is set (the
// OutriggerLogged contestant). When `outrigger check` refuses the postgres
// listener (a build without it), Outrigger runs without it and
// instance.pgNA says why; the same when the listener starts but does not
// serve.
func (e *env) startOutrigger(ctx context.Context, up upstreams, logged bool) (*instance, error) {
	if _, err := os.Stat(e.outrigger); err != nil {
		return nil, fmt.Errorf("%w: %v (make build writes bin/outrigger)", errNotInstalled, err)
	}
	id := bench.Outrigger
	if logged {
		id = bench.OutriggerLogged
	}
	dir, err := e.newDir(id)
	if err != nil {
		return nil, err
	}
	accessLog := ""
	if logged {
		accessLog = filepath.Join(dir, "access.log")
	}
	admin, err1 := freeAddr()
	pgListen, err2 := freeAddr()
	redisListen, err3 := freeAddr()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "outrigger.yaml")
	in := &instance{id: id, addr: map[string]string{}, admin: admin}
	write := func(up upstreams) error {
		return os.WriteFile(cfg, []byte(outriggerConfig(admin, pgListen, redisListen, accessLog, up)), 0o644)
	}
	if err := write(up); err != nil {
		return nil, err
	}
	if up.pg != "" {
		out, err := exec.CommandContext(ctx, e.outrigger, "check", "-c", cfg).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if !strings.Contains(msg, "postgres") {
				return nil, fmt.Errorf("outrigger check: %v: %s", err, msg)
			}
			na := &bench.NA{Short: "error", Detail: "`outrigger check` refuses the postgres listener: " + oneLine(msg)}
			if strings.Contains(msg, "no postgres listener") {
				na.Short = "not built"
				na.Detail = "this build of Outrigger has no postgres listener (`outrigger check`: " + oneLine(msg) + ")"
			}
			in.pgNA = na
			up.pg = ""
			if up.redis == "" {
				return in, nil
			}
			if err := write(up); err != nil {
				return nil, err
			}
		}
	}
	p, err := testenv.StartProcess(testenv.ProcessSpec{Name: "outrigger", Path: e.outrigger, Args: []string{"run", "-c", cfg}, Dir: dir,
		LogPath: filepath.Join(dir, "outrigger.log"), StopSignal: syscall.SIGTERM, Grace: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	in.proc, in.pid = p, p.PID()
	if up.redis != "" {
		in.addr[bench.Redis] = redisListen
		if err := waitServing(ctx, p, probesFor(map[string]string{bench.Redis: redisListen})); err != nil {
			in.stop()
			return nil, err
		}
	}
	if up.pg != "" {
		if err := waitServing(ctx, p, probesFor(map[string]string{bench.Postgres: pgListen})); err != nil {
			if p.Exited() {
				return nil, err
			}
			in.pgNA = &bench.NA{Short: "did not start", Detail: "the postgres listener did not serve: " + oneLine(err.Error())}
		} else {
			in.addr[bench.Postgres] = pgListen
		}
	}
	// The admin server answers /readyz once the config is live.
	if err := waitHTTP(ctx, "http://"+admin+"/readyz"); err != nil {
		in.stop()
		return nil, fmt.Errorf("admin server: %w", err)
	}
	return in, nil
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
