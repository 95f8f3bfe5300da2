package testenv_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

const spiffeID = "spiffe://example.org/ns/prod/sa/app"

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: -short")
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := testenv.FreePort(t)
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("FreePort returned %d (seen before: %v)", p, seen[p])
		}
		seen[p] = true
	}
	addr := testenv.FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr = %q, want 127.0.0.1:port", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr %s: %v", addr, err)
	}
	l.Close()
}

// handshake runs a TLS handshake over net.Pipe and returns the server's view
// of the connection and the client's handshake error.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, server)
	cli := tls.Client(b, client)
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		err := srv.HandshakeContext(ctxFor(t))
		if err != nil {
			a.Close() // unblock the client
		}
		done <- result{srv.ConnectionState(), err}
	}()
	cerr := cli.HandshakeContext(ctxFor(t))
	if cerr != nil {
		b.Close() // unblock the server
	} else {
		// With TLS 1.3 the client is done before the server has checked the
		// client certificate; net.Pipe has no buffer, so read whatever the
		// server still sends (an alert) or it blocks.
		go func() { _, _ = io.Copy(io.Discard, b) }()
	}
	r := <-done
	if cerr == nil && r.err != nil {
		return r.state, fmt.Errorf("server: %w", r.err)
	}
	return r.state, cerr
}

func TestCertsMutualTLS(t *testing.T) {
	ca := testenv.NewCA(t, "testenv CA")
	serverLeaf := ca.Issue(t, testenv.LeafOptions{})
	clientLeaf := ca.Issue(t, testenv.LeafOptions{CommonName: "app", Client: true, URIs: []string{spiffeID}})

	if got := serverLeaf.Cert.DNSNames; len(got) != 1 || got[0] != "localhost" {
		t.Errorf("default leaf DNS SANs = %v, want [localhost]", got)
	}
	if got := serverLeaf.Cert.IPAddresses; len(got) != 1 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("default leaf IP SANs = %v, want [127.0.0.1]", got)
	}
	if d := time.Until(serverLeaf.Cert.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("default leaf expires in %v, want about 24h", d)
	}

	serverConf := &tls.Config{
		Certificates: []tls.Certificate{serverLeaf.TLSCertificate()},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			state, err := handshake(t, serverConf, &tls.Config{
				Certificates: []tls.Certificate{clientLeaf.TLSCertificate()},
				RootCAs:      ca.Pool(),
				ServerName:   name,
			})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if len(state.PeerCertificates) == 0 {
				t.Fatal("server saw no client certificate")
			}
			uris := state.PeerCertificates[0].URIs
			if len(uris) != 1 || uris[0].String() != spiffeID {
				t.Fatalf("client certificate URIs = %v, want [%s]", uris, spiffeID)
			}
		})
	}

	t.Run("expired client rejected", func(t *testing.T) {
		expired := ca.Issue(t, testenv.LeafOptions{Client: true, NotAfter: time.Now().Add(-time.Minute)})
		_, err := handshake(t, serverConf, &tls.Config{
			Certificates: []tls.Certificate{expired.TLSCertificate()},
			RootCAs:      ca.Pool(),
			ServerName:   "localhost",
		})
		if err == nil {
			t.Fatal("handshake with an expired client certificate succeeded")
		}
	})

	t.Run("other CA rejected", func(t *testing.T) {
		other := testenv.NewCA(t, "other CA")
		_, err := handshake(t, serverConf, &tls.Config{RootCAs: other.Pool(), ServerName: "localhost"})
		if err == nil {
			t.Fatal("client trusted a server certificate from another CA")
		}
	})

	t.Run("files", func(t *testing.T) {
		dir := t.TempDir()
		caCert, caKey := ca.WriteFiles(dir)
		cert, key := clientLeaf.WriteFiles(dir)
		if cert == caCert || key == caKey {
			t.Fatalf("leaf files overwrite CA files: %s %s", cert, key)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatalf("load written leaf: %v", err)
		}
		if _, err := tls.LoadX509KeyPair(caCert, caKey); err != nil {
			t.Fatalf("load written CA: %v", err)
		}
		if !pair.Leaf.Equal(clientLeaf.Cert) {
			t.Fatal("written leaf differs")
		}
	})
}

func TestPostgres(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	pg.Exec(t, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); GRANT SELECT ON t TO PUBLIC")

	tests := []struct {
		name, user, password string
		wantPasswordPrefix   string // of pg_authid.rolpassword
	}{
		{"scram", testenv.PostgresAppUser, testenv.PostgresAppPassword, "SCRAM-SHA-256$"},
		{"md5", testenv.PostgresMD5User, testenv.PostgresMD5Password, "md5"},
		{"trust", testenv.PostgresTrustUser, "", ""},
		{"superuser", testenv.PostgresSuperUser, testenv.PostgresSuperPassword, "SCRAM-SHA-256$"},
	}
	super, err := pgx.Connect(ctxFor(t), pg.SuperDSN())
	if err != nil {
		t.Fatalf("connect superuser: %v", err)
	}
	defer super.Close(context.Background())

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t)
			conn, err := pgx.Connect(ctx, pg.DSN(tt.user, tt.password, testenv.PostgresAppDatabase))
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(ctx)
			var user string
			var n int
			if err := conn.QueryRow(ctx, "SELECT current_user, (SELECT count(*) FROM t)").Scan(&user, &n); err != nil {
				t.Fatalf("query: %v", err)
			}
			if user != tt.user || n != 2 {
				t.Fatalf("current_user, count = %q, %d; want %q, 2", user, n, tt.user)
			}

			var stored *string
			if err := super.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", tt.user).Scan(&stored); err != nil {
				t.Fatalf("read pg_authid: %v", err)
			}
			if tt.wantPasswordPrefix == "" {
				if stored != nil {
					t.Fatalf("%s has a stored password", tt.user)
				}
			} else if stored == nil || !strings.HasPrefix(*stored, tt.wantPasswordPrefix) {
				t.Fatalf("%s password is stored as %v, want prefix %q", tt.user, stored, tt.wantPasswordPrefix)
			}

			if tt.password != "" {
				bad, err := pgx.Connect(ctx, pg.DSN(tt.user, "wrong", testenv.PostgresAppDatabase))
				if err == nil {
					bad.Close(ctx)
					t.Fatal("a wrong password was accepted")
				}
			}
		})
	}

	t.Run("unix socket", func(t *testing.T) {
		ctx := ctxFor(t)
		dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pg.SocketDir, pg.Port, testenv.PostgresTrustUser, testenv.PostgresAppDatabase)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect over the Unix socket: %v", err)
		}
		conn.Close(ctx)
	})
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TestPostgresNoLeftovers starts a server inside a subtest and checks that,
// once the subtest's cleanups ran, no process of its group and no directory
// remain. It also checks ExtraConf and an early Stop.
func TestPostgresNoLeftovers(t *testing.T) {
	skipShort(t)
	t.Parallel()
	var pid int
	var dir string
	t.Run("server", func(t *testing.T) {
		pg := testenv.StartPostgres(t, testenv.PostgresOptions{ExtraConf: map[string]string{"work_mem": "7MB"}})
		pid, dir = pg.PID(), pg.Dir
		ctx := ctxFor(t)
		conn, err := pgx.Connect(ctx, pg.DSN(testenv.PostgresAppUser, testenv.PostgresAppPassword, testenv.PostgresAppDatabase))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(context.Background())
		var workMem string
		if err := conn.QueryRow(ctx, "SHOW work_mem").Scan(&workMem); err != nil || workMem != "7MB" {
			t.Fatalf("work_mem = %q, %v; want 7MB from ExtraConf", workMem, err)
		}
		if err := pg.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := conn.Ping(ctx); err == nil {
			t.Fatal("connection still works after Stop")
		}
	})
	if processAlive(pid) || processAlive(-pid) {
		t.Errorf("postgres process group %d still alive after cleanup", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postgres dir %s still exists after cleanup (%v)", dir, err)
	}
}

func TestRedis(t *testing.T) {
	skipShort(t)
	t.Parallel()
	var pid int
	var dir string
	t.Run("server", func(t *testing.T) {
		r := testenv.StartRedis(t, testenv.RedisOptions{})
		pid, dir = r.PID(), r.Dir
		ctx := ctxFor(t)
		c := r.Client(t)
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET = %q, %v; want v", got, err)
		}
	})
	if processAlive(pid) {
		t.Errorf("redis-server %d still alive after cleanup", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("redis dir %s still exists after cleanup (%v)", dir, err)
	}
}

func TestRedisACL(t *testing.T) {
	skipShort(t)
	t.Parallel()
	r := testenv.StartRedis(t, testenv.RedisOptions{
		RequirePass: "sekret pass",
		ACLUsers: []testenv.RedisACLUser{
			{Name: "reporter", Password: "rep\"ort", Rules: "~report:* +@read +ping"},
			{Name: "writer", Password: "writer"},
		},
	})
	ctx := ctxFor(t)
	def := r.Client(t)
	if err := def.Set(ctx, "report:1", "x", 0).Err(); err != nil {
		t.Fatalf("default user SET: %v", err)
	}
	if err := def.Set(ctx, "other", "y", 0).Err(); err != nil {
		t.Fatalf("default user SET: %v", err)
	}

	noPass := r.Options()
	noPass.Password = ""
	anon := redis.NewClient(noPass)
	defer anon.Close()
	if err := anon.Get(ctx, "report:1").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without a password: %v, want NOAUTH", err)
	}

	rep := r.ClientAs(t, "reporter", "rep\"ort")
	if got, err := rep.Get(ctx, "report:1").Result(); err != nil || got != "x" {
		t.Fatalf("reporter GET report:1 = %q, %v", got, err)
	}
	if err := rep.Set(ctx, "report:1", "z", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("reporter SET: %v, want NOPERM", err)
	}
	if err := rep.Get(ctx, "other").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("reporter GET other: %v, want NOPERM", err)
	}

	w := r.ClientAs(t, "writer", "writer")
	if err := w.Set(ctx, "other", "w", 0).Err(); err != nil {
		t.Fatalf("writer SET: %v", err)
	}
	if who, err := w.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "writer" {
		t.Fatalf("ACL WHOAMI = %q, %v", who, err)
	}
}

func TestRedisTLS(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ca := testenv.NewCA(t, "redis CA")
	files := testenv.WriteTLSFiles(t, ca, ca.Issue(t, testenv.LeafOptions{}))
	r := testenv.StartRedis(t, testenv.RedisOptions{TLS: files})
	ctx := ctxFor(t)
	c := r.Client(t)
	if err := c.Set(ctx, "k", "tls", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "tls" {
		t.Fatalf("GET over TLS = %q, %v", got, err)
	}

	// With a client certificate (tls-auth-clients optional verifies it).
	o := r.Options()
	leaf := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{spiffeID}})
	o.TLSConfig.Certificates = []tls.Certificate{leaf.TLSCertificate()}
	mc := redis.NewClient(o)
	defer mc.Close()
	if err := mc.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with a client certificate: %v", err)
	}

	// Plain TCP gets nowhere on the TLS port.
	plainOpts := r.Options()
	plainOpts.TLSConfig = nil
	plainOpts.MaxRetries = -1
	plainOpts.ReadTimeout = time.Second
	plain := redis.NewClient(plainOpts)
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("plain-text PING on the TLS port succeeded")
	}
}

// TestLaunchWithoutTB uses the entry points for programs: the caller stops
// the servers, Stop takes the process group and the directory with it and is
// idempotent, and a server that cannot start leaves nothing behind.
func TestLaunchWithoutTB(t *testing.T) {
	skipShort(t)
	t.Parallel()
	if _, err := testenv.PostgresBinDir(); err != nil {
		t.Skip(err)
	}
	pg, err := testenv.LaunchPostgres(testenv.PostgresOptions{})
	if err != nil {
		t.Fatalf("LaunchPostgres: %v", err)
	}
	defer pg.Stop()
	r, err := testenv.LaunchRedis(testenv.RedisOptions{})
	if errors.Is(err, testenv.ErrRedisNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("LaunchRedis: %v", err)
	}
	defer r.Stop()

	ctx := ctxFor(t)
	conn, err := pgx.Connect(ctx, pg.DSN(testenv.PostgresAppUser, testenv.PostgresAppPassword, testenv.PostgresAppDatabase))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	conn.Close(ctx)
	c := redis.NewClient(r.Options())
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}

	for _, s := range []struct {
		name string
		pid  int
		dir  string
		stop func() error
	}{
		{"postgres", pg.PID(), pg.Dir, pg.Stop},
		{"redis", r.PID(), r.Dir, r.Stop},
	} {
		if err := s.stop(); err != nil {
			t.Errorf("%s Stop: %v", s.name, err)
		}
		if processAlive(s.pid) || processAlive(-s.pid) {
			t.Errorf("%s process group %d alive after Stop", s.name, s.pid)
		}
		if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s dir %s still exists after Stop (%v)", s.name, s.dir, err)
		}
		if err := s.stop(); err != nil {
			t.Errorf("%s second Stop: %v", s.name, err)
		}
	}

	t.Run("failed start leaves nothing", func(t *testing.T) {
		_, err := testenv.LaunchPostgres(testenv.PostgresOptions{ExtraConf: map[string]string{"max_connections": "many"}})
		if err == nil {
			t.Fatal("LaunchPostgres with max_connections = many succeeded")
		}
		m := regexp.MustCompile(`log tail \((\S+)/postgres\.log\)`).FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("error names no log: %v", err)
		}
		if _, serr := os.Stat(m[1]); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("dir %s left behind after a failed start (%v)", m[1], serr)
		}
	})
}
