package integration

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// startRedisControl is a Redis that answers -BUSY 200 ms into a script and
// an Outrigger in front of it with a pool of poolSize and a 5 s
// command_timeout.
func startRedisControl(t *testing.T, poolSize int) *redisProxy {
	t.Helper()
	up := testenv.StartRedis(t, testenv.RedisOptions{ExtraConf: map[string]string{"busy-reply-threshold": "200"}})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, redisProxyConfig(listen, up.Addr, poolSize, 5*time.Second))
	return &redisProxy{o: o, up: up, addr: listen}
}

// pingAll sends PING on every conn at once and returns the replies' first
// lines (or the read errors), by conn.
func pingAll(conns []net.Conn, readers []*bufio.Reader) []string {
	out := make([]string, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				out[i] = "write: " + err.Error()
				return
			}
			line, err := readers[i].ReadString('\n')
			if err != nil {
				out[i] = "read: " + err.Error()
				return
			}
			out[i] = strings.TrimRight(line, "\r\n")
		}()
	}
	wg.Wait()
	return out
}

// TestRedisControlOutOfBand: a runaway script or function holds Redis
// busy while 1000 other clients use the pool; SCRIPT KILL and FUNCTION KILL
// from another client reach Redis at once (never queued behind the script
// on a shared connection), the script's client gets Redis's error, and
// everyone's next command works. CLIENT UNPAUSE likewise ends a CLIENT PAUSE
// while writes wait behind it on the only shared connection.
func TestRedisControlOutOfBand(t *testing.T) {
	integrationOnly(t)
	p := startRedisControl(t, 4)
	ctx := testCtx(t, 2*time.Minute)

	const others = 1000
	conns := make([]net.Conn, others)
	readers := make([]*bufio.Reader, others)
	for i := range conns {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i], readers[i] = c, bufio.NewReader(c)
	}
	for i, r := range pingAll(conns, readers) {
		if r != "+PONG" {
			t.Fatalf("client %d before: %q", i, r)
		}
	}

	// The killer shares the script's shared connection (sessions take the
	// pool's connections in turn), as one of many clients would.
	a := p.client(t, 2)
	if err := a.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.client(t, 2).Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := p.client(t, 2)
	if err := b.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.FunctionLoad(ctx, "#!lua name=spinlib\nredis.register_function('spin', function() while true do end end)").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func() error
		kill func() error
	}{
		{"script-kill", func() error { return a.Eval(ctx, "while true do end", nil).Err() }, func() error { return b.ScriptKill(ctx).Err() }},
		{"function-kill", func() error { return a.FCall(ctx, "spin", nil).Err() }, func() error { return b.FunctionKill(ctx).Err() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := make(chan error, 1)
			go func() { res <- tc.run() }()
			time.Sleep(500 * time.Millisecond) // past busy-reply-threshold
			during := make(chan []string, 1)
			go func() { during <- pingAll(conns, readers) }()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			if err := tc.kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			busy := 0
			for i, r := range <-during {
				switch {
				case strings.HasPrefix(r, "-BUSY"):
					busy++
				case r == "+PONG":
				default:
					t.Fatalf("client %d while the script runs: %q", i, r)
				}
			}
			if busy == 0 {
				t.Fatal("no client saw -BUSY: the script was not running")
			}
			select {
			case err := <-res:
				if err == nil || !strings.Contains(err.Error(), "killed by user") {
					t.Fatalf("the script's client got %v, want Redis's killed-by-user error", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the script's client got no reply 3 s after the kill")
			}
			t.Logf("%d of %d clients saw -BUSY; the kill and the script's error took %v", busy, others, time.Since(start).Round(time.Millisecond))
			for i, r := range pingAll(conns, readers) {
				if r != "+PONG" {
					t.Fatalf("client %d after the kill: %q", i, r)
				}
			}
			if err := b.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("client-unpause", func(t *testing.T) {
		q := startRedisControl(t, 1)
		pauser, writer, unpauser := q.client(t, 3), q.client(t, 3), q.client(t, 3)
		for _, c := range []interface {
			Ping(context.Context) *redis.StatusCmd
		}{pauser, writer, unpauser} {
			if err := c.Ping(ctx).Err(); err != nil { // connected before the pause
				t.Fatal(err)
			}
		}
		if err := pauser.Do(ctx, "client", "pause", "20000", "write").Err(); err != nil {
			t.Fatal(err)
		}
		set := make(chan error, 1)
		go func() { set <- writer.Set(ctx, "paused-key", "v", 0).Err() }()
		time.Sleep(200 * time.Millisecond) // the SET waits on the shared connection
		start := time.Now()
		if err := unpauser.ClientUnpause(ctx).Err(); err != nil {
			t.Fatalf("CLIENT UNPAUSE: %v", err)
		}
		select {
		case err := <-set:
			if err != nil {
				t.Fatalf("the paused SET: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the SET still waits 3 s after CLIENT UNPAUSE")
		}
		t.Logf("CLIENT UNPAUSE and the paused SET took %v", time.Since(start).Round(time.Millisecond))
		if v, err := unpauser.Get(ctx, "paused-key").Result(); err != nil || v != "v" {
			t.Fatalf("GET = %q, %v", v, err)
		}
	})
}

// TestRedisRefusalsAreRedis: by default what a user may run is Redis's ACL's
// to decide. FLUSHALL from a user Redis allows it passes through Outrigger;
// from a user Redis denies it, the client gets Redis's own -NOPERM, word for
// word as direct. What Outrigger itself refuses (the replication handshake)
// is a -NOPERM naming Outrigger and the setting.
func TestRedisRefusalsAreRedis(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{ACLUsers: []testenv.RedisACLUser{
		{Name: "flusher", Password: "f-pw"},
		{Name: "keeper", Password: "k-pw", Rules: "~* &* +@all -flushall"},
	}}, 4)
	ctx := testCtx(t, time.Minute)
	for _, proto := range []int{2, 3} {
		as := func(addr, user, pw string) *redis.Client {
			return proxyClient(t, addr, proto, func(o *redis.Options) { o.Username, o.Password = user, pw })
		}
		if err := as(p.addr, "flusher", "f-pw").FlushAll(ctx).Err(); err != nil {
			t.Fatalf("RESP%d: FLUSHALL by a user Redis allows it: %v", proto, err)
		}
		viaProxy := as(p.addr, "keeper", "k-pw").FlushAll(ctx).Err()
		direct := as(p.up.Addr, "keeper", "k-pw").FlushAll(ctx).Err()
		if direct == nil || !strings.HasPrefix(direct.Error(), "NOPERM") {
			t.Fatalf("RESP%d: direct FLUSHALL by a denied user: %v", proto, direct)
		}
		if viaProxy == nil || viaProxy.Error() != direct.Error() {
			t.Fatalf("RESP%d: FLUSHALL by a denied user through Outrigger: %v, direct: %v", proto, viaProxy, direct)
		}
		err := as(p.addr, "flusher", "f-pw").Do(ctx, "psync", "?", "-1").Err()
		if err == nil || err.Error() != "NOPERM Outrigger refuses the 'psync' command (redis[].refuse_commands)" {
			t.Fatalf("RESP%d: PSYNC: %v", proto, err)
		}
	}
}
