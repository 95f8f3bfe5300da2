package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisReadyTimeout bounds how long a new server may take to answer PING.
const redisReadyTimeout = 60 * time.Second

// RedisOptions configures LaunchRedis and StartRedis. The zero value is ready
// to use: no password, plain TCP.
type RedisOptions struct {
	// ACLUsers become "user" directives in redis.conf.
	ACLUsers []RedisACLUser
	// RequirePass, when set, is the password of the default user.
	RequirePass string
	// TLS, when set, makes the server speak only TLS on its port (--port 0,
	// --tls-port), with client certificates optional but verified against
	// CAFile when presented.
	TLS *TLSFiles
	// ExtraConf lines are appended to redis.conf as "key value", in key order,
	// with value written verbatim (so "save": "900 1" works).
	ExtraConf map[string]string
}

// RedisACLUser is one ACL user of a Redis server started by StartRedis. It is
// written as `user <Name> on ><Password> <Rules>`; an empty Password means
// nopass, and empty Rules mean every key, channel and command
// ("~* &* +@all"). Rules are Redis ACL rules separated by spaces, such as
// "~report:* +@read"; they follow "on", so "off" in Rules wins.
type RedisACLUser struct {
	Name     string
	Password string
	Rules    string
}

// TLSFiles names PEM files for a TLS server: its certificate and key, and the
// CA that verifies peers. WriteTLSFiles makes one from a CA and a Leaf.
type TLSFiles struct {
	CertFile string
	KeyFile  string
	CAFile   string
}

// ErrRedisNotFound is returned (wrapped) by LaunchRedis when redis-server is
// not on PATH.
var ErrRedisNotFound = errors.New("testenv: redis-server not found on PATH")

// Redis is a running throwaway Redis server started by LaunchRedis or
// StartRedis. Stop ends it and deletes its directory; StartRedis calls Stop
// when the test that started it ends.
type Redis struct {
	Addr    string // "127.0.0.1:port"
	Port    int
	Dir     string // the server's directory (redis.conf, log), removed by Stop
	LogPath string // the server's stdout and stderr

	opts      RedisOptions
	srv       *server
	readyTook time.Duration
}

// LaunchRedis starts redis-server on a free port of 127.0.0.1 with
// persistence off and returns once it answers PING. It is StartRedis for
// programs that have no testing.TB: the caller must call Stop, which stops the
// server (SIGTERM, then SIGKILL after 10 s) and removes its directory. If
// redis-server is not on PATH, the error wraps ErrRedisNotFound. On error
// nothing is left running and no directory is left behind.
func LaunchRedis(opts RedisOptions) (*Redis, error) {
	return launchRedis(opts, discard)
}

// StartRedis is LaunchRedis for a test: the server is stopped and its
// directory removed in t.Cleanup, and if the test failed the tail of the
// server log is printed. If redis-server is not on PATH, the test is skipped;
// any other problem fails it.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	r, err := launchRedis(opts, t.Logf)
	if errors.Is(err, ErrRedisNotFound) {
		t.Skip("testenv: redis-server not found on PATH (apt-get install redis-server)")
	}
	if err != nil {
		t.Fatal(err)
	}
	r.srv.stopAtCleanup(t)
	t.Logf("testenv: redis-server pid %d on %s (dir %s; ready %v)",
		r.PID(), r.Addr, r.Dir, r.readyTook.Round(time.Millisecond))
	return r
}

func launchRedis(opts RedisOptions, logf logf) (_ *Redis, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install redis-server)", ErrRedisNotFound)
	}
	var probeTLS *tls.Config
	if opts.TLS != nil {
		// The probe only checks that the server answers; the clients from
		// Client verify the server certificate.
		probeTLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // liveness probe only
	}
	dir, err := newServerDir("outrigger-redis-*")
	if err != nil {
		return nil, err
	}
	r := &Redis{Dir: dir, LogPath: filepath.Join(dir, "redis.log"), opts: opts}
	r.srv = &server{name: "redis-server", dir: dir, logPath: r.LogPath}
	defer func() {
		if err != nil {
			_ = r.srv.stop()
		}
	}()
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(redisConf(dir, opts)), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}

	start := time.Now()
	r.srv.proc, r.Port, err = launchServer(launchSpec{
		name:    "redis-server",
		timeout: redisReadyTimeout,
		build: func(port int) procSpec {
			args := []string{confPath}
			if opts.TLS != nil {
				args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port))
			} else {
				args = append(args, "--port", strconv.Itoa(port))
			}
			return procSpec{
				name:       "redis-server",
				path:       bin,
				args:       args,
				dir:        dir,
				logPath:    r.LogPath,
				stopSignal: syscall.SIGTERM,
			}
		},
		ready: func(ctx context.Context, port int) error {
			return redisPing(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), probeTLS)
		},
	}, logf)
	if err != nil {
		return nil, err
	}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	r.readyTook = time.Since(start)
	return r, nil
}

// Options returns go-redis options for this server as the default user, with
// RequirePass as the password and, for a TLS server, a TLS config that trusts
// TLS.CAFile and presents no client certificate. Change them freely; each call
// returns a new value.
func (r *Redis) Options() *redis.Options {
	o := &redis.Options{
		Addr:         r.Addr,
		Password:     r.opts.RequirePass,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	}
	if r.opts.TLS != nil {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(r.opts.TLS.CAFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		o.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	return o
}

// Client returns a go-redis client for the default user (see Options),
// closed in t.Cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	return r.newClient(t, r.Options())
}

// ClientAs returns a go-redis client that authenticates as the ACL user
// username, closed in t.Cleanup.
func (r *Redis) ClientAs(t testing.TB, username, password string) *redis.Client {
	t.Helper()
	o := r.Options()
	o.Username, o.Password = username, password
	return r.newClient(t, o)
}

func (r *Redis) newClient(t testing.TB, o *redis.Options) *redis.Client {
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// PID returns the process id of redis-server.
func (r *Redis) PID() int { return r.srv.proc.pid() }

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and then removes
// its directory. A test may call it before its cleanup does, to see what
// clients see when Redis goes away; the log tail that a failed test prints is
// read just before the directory goes. Stop can be called more than once,
// from any goroutine; later calls return the first result.
func (r *Redis) Stop() error { return r.srv.stop() }

// redisConf renders redis.conf; the port is given on the command line.
func redisConf(dir string, opts RedisOptions) string {
	var b strings.Builder
	b.WriteString("# Written by outrigger internal/testenv.\n")
	b.WriteString("bind 127.0.0.1\n")
	b.WriteString("daemonize no\n")
	b.WriteString("save \"\"\n")
	b.WriteString("appendonly no\n")
	b.WriteString("dir " + redisQuote(dir) + "\n")
	b.WriteString("logfile \"\"\n")
	if opts.RequirePass != "" {
		b.WriteString("requirepass " + redisQuote(opts.RequirePass) + "\n")
	}
	for _, u := range opts.ACLUsers {
		pass := "nopass"
		if u.Password != "" {
			pass = ">" + u.Password
		}
		rules := strings.Fields(u.Rules)
		if len(rules) == 0 {
			rules = []string{"~*", "&*", "+@all"}
		}
		fmt.Fprintf(&b, "user %s on %s", redisQuote(u.Name), redisQuote(pass))
		for _, r := range rules {
			b.WriteString(" " + redisQuote(r))
		}
		b.WriteString("\n")
	}
	if opts.TLS != nil {
		fmt.Fprintf(&b, "tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients optional\n",
			redisQuote(opts.TLS.CertFile), redisQuote(opts.TLS.KeyFile), redisQuote(opts.TLS.CAFile))
	}
	for _, k := range slices.Sorted(maps.Keys(opts.ExtraConf)) {
		fmt.Fprintf(&b, "%s %s\n", k, opts.ExtraConf[k])
	}
	return b.String()
}

// redisQuote returns s as one redis.conf argument, double-quoted with escapes
// when it holds anything but plain characters.
func redisQuote(s string) string {
	plain := s != ""
	for _, c := range s {
		if c <= ' ' || c == '"' || c == '\'' || c == '\\' || c > '~' {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// redisPing sends PING over a raw connection. Any answer but -LOADING or
// -BUSY means the server is serving (with a password set, the answer is
// -NOAUTH).
func redisPing(ctx context.Context, addr string, tlsConf *tls.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if tlsConf != nil {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-LOADING") || strings.HasPrefix(line, "-BUSY") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
