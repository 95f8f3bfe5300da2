package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// The Redis frontend's "Done when" list (issue 4), against a real
// redis-server with Outrigger's redis listener in front of it.

const redisListener = "rd"

// redisProxy is one real Redis and one Outrigger whose redis listener
// (named rd) fronts it.
type redisProxy struct {
	o    *outrigger
	up   *testenv.Redis
	addr string // the listener's address
}

// redisProxyConfig renders a config with one redis listener in front of upstream.
func redisProxyConfig(listen, upstream string, poolSize int, commandTimeout time.Duration) string {
	return redisProxyConfigPinned(listen, upstream, poolSize, 64, commandTimeout)
}

func redisProxyConfigPinned(listen, upstream string, poolSize, pinnedSize int, commandTimeout time.Duration) string {
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: info}
shutdown: {drain_timeout: 2s}
redis:
  - name: %s
    listen: %s
    upstream: {address: %s, connect_timeout: 2s}
    pool: {size: %d, pinned_size: %d, command_timeout: %s}
`, redisListener, listen, upstream, poolSize, pinnedSize, commandTimeout)
}

func startRedisProxy(t *testing.T, opts testenv.RedisOptions, poolSize int) *redisProxy {
	t.Helper()
	up := testenv.StartRedis(t, opts)
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, redisProxyConfig(listen, up.Addr, poolSize, 3*time.Second))
	if a := o.Srv.ListenerAddr(redisListener); a == nil || a.String() != listen {
		t.Fatalf("listener %s address = %v, want %s", redisListener, a, listen)
	}
	return &redisProxy{o: o, up: up, addr: listen}
}

// client is a go-redis client of the proxy, closed when the test ends.
func (p *redisProxy) client(t testing.TB, proto int, mutate ...func(*redis.Options)) *redis.Client {
	t.Helper()
	return proxyClient(t, p.addr, proto, mutate...)
}

func proxyClient(t testing.TB, addr string, proto int, mutate ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{
		Addr:         addr,
		Protocol:     proto,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  15 * time.Second,
		WriteTimeout: 15 * time.Second,
	}
	for _, m := range mutate {
		m(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRedisGoRedis runs go-redis v9 through the proxy with RESP3 and RESP2:
// every command family the issue names, each as a subtest.
func TestRedisGoRedis(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	direct := p.up.Client(t)
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			// No retries: a command that fails or hangs is seen as such.
			rdb := p.client(t, proto, func(o *redis.Options) { o.MaxRetries = -1 })
			pre := fmt.Sprintf("p%d:", proto)

			t.Run("Strings", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "str"
				if err := rdb.Set(ctx, k, "hello", 0).Err(); err != nil {
					t.Fatalf("SET: %v", err)
				}
				if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "hello" {
					t.Fatalf("GET = %q, %v; want hello", v, err)
				}
				if _, err := rdb.Get(ctx, pre+"missing").Result(); !errors.Is(err, redis.Nil) {
					t.Fatalf("GET of a missing key: err = %v, want redis.Nil", err)
				}
				for i := 1; i <= 3; i++ {
					if n, err := rdb.Incr(ctx, pre+"ctr").Result(); err != nil || n != int64(i) {
						t.Fatalf("INCR #%d = %d, %v", i, n, err)
					}
				}
				if v, err := direct.Get(ctx, k).Result(); err != nil || v != "hello" {
					t.Fatalf("the real server has %s = %q, %v", k, v, err)
				}
				// A server error reply passes through as the server said it.
				err := rdb.Incr(ctx, k).Err()
				if err == nil || !strings.HasPrefix(err.Error(), "ERR value is not an integer") {
					t.Fatalf("INCR of a string: err = %v, want the server's ERR value is not an integer", err)
				}
			})

			t.Run("Protocol", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				// RESP3 clients get RESP3 replies (a map), RESP2 clients a flat array.
				k := pre + "hash"
				if err := rdb.HSet(ctx, k, "f", "v").Err(); err != nil {
					t.Fatal(err)
				}
				v, err := rdb.Do(ctx, "HGETALL", k).Result()
				if err != nil {
					t.Fatalf("HGETALL: %v", err)
				}
				switch v := v.(type) {
				case map[interface{}]interface{}:
					if proto != 3 || len(v) != 1 || v["f"] != "v" {
						t.Fatalf("RESP%d HGETALL = %#v", proto, v)
					}
				case []interface{}:
					if proto != 2 || len(v) != 2 || v[0] != "f" || v[1] != "v" {
						t.Fatalf("RESP%d HGETALL = %#v", proto, v)
					}
				default:
					t.Fatalf("RESP%d HGETALL = %#v (%T)", proto, v, v)
				}
				if m, err := rdb.HGetAll(ctx, k).Result(); err != nil || m["f"] != "v" {
					t.Fatalf("HGetAll = %v, %v", m, err)
				}
			})

			t.Run("Pipeline10k", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				const n = 10000
				k := pre + "pipectr"
				cmds, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
					for i := 0; i < n; i++ {
						switch i % 4 {
						case 0, 2:
							pipe.Incr(ctx, k)
						case 1:
							pipe.Echo(ctx, "e"+strconv.Itoa(i))
						case 3:
							pipe.Set(ctx, pre+"pipe:"+strconv.Itoa(i), i, 0)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatalf("Pipelined: %v", err)
				}
				if len(cmds) != n {
					t.Fatalf("%d results, want %d", len(cmds), n)
				}
				var want int64
				bad := 0
				for i, c := range cmds {
					var ok bool
					switch i % 4 {
					case 0, 2:
						want++
						v, err := c.(*redis.IntCmd).Result()
						ok = err == nil && v == want
					case 1:
						v, err := c.(*redis.StringCmd).Result()
						ok = err == nil && v == "e"+strconv.Itoa(i)
					case 3:
						v, err := c.(*redis.StatusCmd).Result()
						ok = err == nil && v == "OK"
					}
					if !ok {
						if bad < 5 {
							t.Errorf("pipeline reply %d (%s) = %v", i, c.Name(), c)
						}
						bad++
					}
				}
				if bad > 0 {
					t.Fatalf("%d of %d pipeline replies wrong or out of order", bad, n)
				}
			})

			t.Run("TxPipelined", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "tx"
				cmds, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.Set(ctx, k, "1", 0)
					pipe.Incr(ctx, k)
					pipe.Get(ctx, k)
					return nil
				})
				if err != nil {
					t.Fatalf("TxPipelined: %v", err)
				}
				if len(cmds) != 3 || cmds[0].(*redis.StatusCmd).Val() != "OK" ||
					cmds[1].(*redis.IntCmd).Val() != 2 || cmds[2].(*redis.StringCmd).Val() != "2" {
					t.Fatalf("MULTI/EXEC results = %v", cmds)
				}
				// The connection is usable afterwards, outside a transaction.
				if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "2" {
					t.Fatalf("GET after EXEC = %q, %v", v, err)
				}
			})

			t.Run("WatchConflict", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "watched"
				other := p.client(t, proto)
				if err := rdb.Set(ctx, k, 10, 0).Err(); err != nil {
					t.Fatal(err)
				}
				err := rdb.Watch(ctx, func(tx *redis.Tx) error {
					v, err := tx.Get(ctx, k).Int()
					if err != nil {
						return err
					}
					// Another client changes the watched key before EXEC.
					if err := other.Set(ctx, k, 100, 0).Err(); err != nil {
						return err
					}
					_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
						pipe.Set(ctx, k, v+1, 0)
						return nil
					})
					return err
				}, k)
				if !errors.Is(err, redis.TxFailedErr) {
					t.Fatalf("WATCH with a conflicting writer: err = %v, want redis.TxFailedErr (EXEC answered nil)", err)
				}
				if v, _ := rdb.Get(ctx, k).Result(); v != "100" {
					t.Fatalf("after the failed EXEC, %s = %q, want the other writer's 100", k, v)
				}
				// Without a conflict the same transaction commits.
				err = rdb.Watch(ctx, func(tx *redis.Tx) error {
					v, err := tx.Get(ctx, k).Int()
					if err != nil {
						return err
					}
					_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
						pipe.Set(ctx, k, v+1, 0)
						return nil
					})
					return err
				}, k)
				if err != nil {
					t.Fatalf("WATCH without a conflict: %v", err)
				}
				if v, _ := direct.Get(ctx, k).Result(); v != "101" {
					t.Fatalf("after EXEC, %s = %q on the server, want 101", k, v)
				}
			})

			t.Run("Subscribe", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				sub := p.client(t, proto)
				pub := p.client(t, proto)
				ch := pre + "chan"
				ps := sub.Subscribe(ctx, ch)
				defer ps.Close()
				if _, err := ps.Receive(ctx); err != nil {
					t.Fatalf("SUBSCRIBE confirmation: %v", err)
				}
				for i := 0; i < 3; i++ {
					n, err := pub.Publish(ctx, ch, "m"+strconv.Itoa(i)).Result()
					if err != nil || n != 1 {
						t.Fatalf("PUBLISH = %d, %v; want 1 receiver", n, err)
					}
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					msg, err := ps.ReceiveMessage(rctx)
					cancel()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if msg.Channel != ch || msg.Payload != "m"+strconv.Itoa(i) {
						t.Fatalf("message %d = %+v", i, msg)
					}
				}
			})

			t.Run("PSubscribe", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				sub := p.client(t, proto)
				pub := p.client(t, proto)
				ps := sub.PSubscribe(ctx, pre+"news.*")
				defer ps.Close()
				if _, err := ps.Receive(ctx); err != nil {
					t.Fatalf("PSUBSCRIBE confirmation: %v", err)
				}
				if err := pub.Publish(ctx, pre+"news.sport", "goal").Err(); err != nil {
					t.Fatal(err)
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				msg, err := ps.ReceiveMessage(rctx)
				if err != nil {
					t.Fatalf("pmessage: %v", err)
				}
				if msg.Pattern != pre+"news.*" || msg.Channel != pre+"news.sport" || msg.Payload != "goal" {
					t.Fatalf("pmessage = %+v", msg)
				}
			})

			t.Run("BLPOPWaits", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "queue"
				pusher := p.client(t, proto)
				type res struct {
					v    []string
					err  error
					took time.Duration
				}
				got := make(chan res, 1)
				go func() {
					start := time.Now()
					v, err := rdb.BLPop(ctx, 10*time.Second, k).Result()
					got <- res{v, err, time.Since(start)}
				}()
				time.Sleep(500 * time.Millisecond)
				select {
				case r := <-got:
					t.Fatalf("BLPOP returned before anything was pushed: %v, %v", r.v, r.err)
				default:
				}
				if err := pusher.RPush(ctx, k, "job1").Err(); err != nil {
					t.Fatalf("RPUSH: %v", err)
				}
				select {
				case r := <-got:
					if r.err != nil || len(r.v) != 2 || r.v[0] != k || r.v[1] != "job1" {
						t.Fatalf("BLPOP = %v, %v; want [%s job1]", r.v, r.err, k)
					}
					if r.took < 400*time.Millisecond {
						t.Fatalf("BLPOP took %v: it did not wait", r.took)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("BLPOP did not return after the push")
				}
				// The shared connection still works after the pinned one.
				if err := rdb.Ping(ctx).Err(); err != nil {
					t.Fatalf("PING after BLPOP: %v", err)
				}
			})

			t.Run("EVAL", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "lua"
				v, err := rdb.Eval(ctx, "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[1], ARGV[2])",
					[]string{k}, 40, 2).Int64()
				if err != nil || v != 42 {
					t.Fatalf("EVAL = %d, %v; want 42", v, err)
				}
				s, err := rdb.Eval(ctx, "return {KEYS[1], ARGV[1]}", []string{k}, "x").StringSlice()
				if err != nil || len(s) != 2 || s[0] != k || s[1] != "x" {
					t.Fatalf("EVAL returning a table = %v, %v", s, err)
				}
			})

			t.Run("Scan10k", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				const n = 10000
				prefix := pre + "scan:"
				if _, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
					for i := 0; i < n; i++ {
						pipe.Set(ctx, prefix+strconv.Itoa(i), i, 0)
					}
					return nil
				}); err != nil {
					t.Fatalf("loading %d keys: %v", n, err)
				}
				seen := map[string]bool{}
				var cursor uint64
				for rounds := 0; ; rounds++ {
					keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
					if err != nil {
						t.Fatalf("SCAN %d: %v", cursor, err)
					}
					for _, k := range keys {
						seen[k] = true
					}
					cursor = next
					if cursor == 0 {
						break
					}
					if rounds > 100000 {
						t.Fatal("SCAN does not end")
					}
				}
				if len(seen) != n {
					t.Fatalf("SCAN saw %d distinct keys, want %d", len(seen), n)
				}
			})

			t.Run("Value10MB", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "big"
				big := make([]byte, 10<<20)
				rand.New(rand.NewSource(int64(proto))).Read(big)
				if err := rdb.Set(ctx, k, big, 0).Err(); err != nil {
					t.Fatalf("SET 10 MB: %v", err)
				}
				got, err := rdb.Get(ctx, k).Bytes()
				if err != nil {
					t.Fatalf("GET 10 MB: %v", err)
				}
				if !bytes.Equal(got, big) {
					t.Fatalf("10 MB value came back different (%d bytes)", len(got))
				}
				if n, err := direct.StrLen(ctx, k).Result(); err != nil || n != int64(len(big)) {
					t.Fatalf("STRLEN on the server = %d, %v", n, err)
				}
			})

			t.Run("SelectIsolation", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				k := pre + "selected"
				db0 := p.client(t, proto, func(o *redis.Options) { o.DB = 0 })
				db3 := p.client(t, proto, func(o *redis.Options) { o.DB = 3 })
				if err := db0.Set(ctx, k, "zero", 0).Err(); err != nil {
					t.Fatal(err)
				}
				if err := db3.Set(ctx, k, "three", 0).Err(); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 20; i++ { // interleaved: they share nothing
					v0, err0 := db0.Get(ctx, k).Result()
					v3, err3 := db3.Get(ctx, k).Result()
					if v0 != "zero" || v3 != "three" || err0 != nil || err3 != nil {
						t.Fatalf("DB 0 sees %q (%v), DB 3 sees %q (%v)", v0, err0, v3, err3)
					}
				}
				directDB3 := redis.NewClient(&redis.Options{Addr: p.up.Addr, DB: 3})
				defer directDB3.Close()
				if v, err := directDB3.Get(ctx, k).Result(); v != "three" || err != nil {
					t.Fatalf("real server DB 3 has %q, %v", v, err)
				}
				if v, err := direct.Get(ctx, k).Result(); v != "zero" || err != nil {
					t.Fatalf("real server DB 0 has %q, %v", v, err)
				}
				// SELECT sent on an open connection moves just that connection.
				cn := rdb.Conn()
				defer cn.Close()
				if err := cn.Select(ctx, 3).Err(); err != nil {
					t.Fatalf("SELECT 3: %v", err)
				}
				if v, err := cn.Get(ctx, k).Result(); v != "three" || err != nil {
					t.Fatalf("after SELECT 3, GET = %q, %v", v, err)
				}
				if v, err := db0.Get(ctx, k).Result(); v != "zero" || err != nil {
					t.Fatalf("another client after SELECT 3 elsewhere: GET = %q, %v", v, err)
				}
				if err := cn.Select(ctx, 0).Err(); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("ClientName", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				cn := rdb.Conn()
				defer cn.Close()
				if err := cn.ClientSetName(ctx, "outrigger-test").Err(); err != nil {
					t.Fatalf("CLIENT SETNAME: %v", err)
				}
				if v, err := cn.ClientGetName(ctx).Result(); err != nil || v != "outrigger-test" {
					t.Fatalf("CLIENT GETNAME = %q, %v", v, err)
				}
				named := p.client(t, proto, func(o *redis.Options) { o.ClientName = "from-options"; o.PoolSize = 1 })
				if v, err := named.ClientGetName(ctx).Result(); err != nil || v != "from-options" {
					t.Fatalf("CLIENT GETNAME with Options.ClientName = %q, %v", v, err)
				}
				// Names are per client: another connection has its own.
				other := p.client(t, proto, func(o *redis.Options) { o.PoolSize = 1 })
				if v, err := other.ClientGetName(ctx).Result(); v != "" || (err != nil && !errors.Is(err, redis.Nil)) {
					t.Fatalf("an unnamed client's CLIENT GETNAME = %q, %v", v, err)
				}
			})

			t.Run("EchoPing", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second) // one subtest that hangs does not fail the rest
				if v, err := rdb.Echo(ctx, "hi there").Result(); err != nil || v != "hi there" {
					t.Fatalf("ECHO = %q, %v", v, err)
				}
				if v, err := rdb.Ping(ctx).Result(); err != nil || v != "PONG" {
					t.Fatalf("PING = %q, %v", v, err)
				}
				if v, err := rdb.Do(ctx, "PING", "payload").Text(); err != nil || v != "payload" {
					t.Fatalf("PING payload = %q, %v", v, err)
				}
			})
		})
	}
}

// TestRedisACLUser authenticates through the proxy as a Redis 6 ACL user
// that may only read: reads work, a write gets Redis's own -NOPERM, a wrong
// password gets -WRONGPASS.
func TestRedisACLUser(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{ACLUsers: []testenv.RedisACLUser{
		{Name: "reader", Password: "pw", Rules: "~* +@read +ping +hello +auth +client"},
	}}, 2)
	ctx := testCtx(t, 30*time.Second)
	if err := p.up.Client(t).Set(ctx, "acl:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			reader := p.client(t, proto, func(o *redis.Options) { o.Username, o.Password = "reader", "pw" })
			if v, err := reader.Get(ctx, "acl:k").Result(); err != nil || v != "v" {
				t.Fatalf("GET as reader = %q, %v", v, err)
			}
			err := reader.Set(ctx, "acl:k", "w", 0).Err()
			if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
				t.Fatalf("SET as reader: err = %v, want Redis's -NOPERM", err)
			}
			if v, _ := p.up.Client(t).Get(ctx, "acl:k").Result(); v != "v" {
				t.Fatalf("the refused SET changed the key to %q", v)
			}
			wrong := p.client(t, proto, func(o *redis.Options) { o.Username, o.Password = "reader", "nope"; o.MaxRetries = -1 })
			err = wrong.Get(ctx, "acl:k").Err()
			if err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
				t.Fatalf("wrong password: err = %v, want WRONGPASS", err)
			}
			// AUTH user pass on an open connection switches that connection.
			plain := p.client(t, proto)
			cn := plain.Conn()
			defer cn.Close()
			if err := cn.Set(ctx, "acl:k2", "x", 0).Err(); err != nil {
				t.Fatalf("SET as default: %v", err)
			}
			if err := cn.AuthACL(ctx, "reader", "pw").Err(); err != nil {
				t.Fatalf("AUTH reader: %v", err)
			}
			if err := cn.Set(ctx, "acl:k2", "y", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
				t.Fatalf("SET after AUTH reader: err = %v, want NOPERM", err)
			}
			if v, err := cn.Get(ctx, "acl:k2").Result(); err != nil || v != "x" {
				t.Fatalf("GET after AUTH reader = %q, %v", v, err)
			}
			if err := cn.AuthACL(ctx, "reader", "bad").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
				t.Fatalf("AUTH with a wrong password: err = %v, want WRONGPASS", err)
			}
		})
	}
}

// TestRedisThousandClients sends 1000 clients through pool.size 4 and checks
// every client's replies, and that the real server sees at most 4
// connections from Outrigger.
func TestRedisThousandClients(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{ExtraConf: map[string]string{"maxclients": "2000"}}, 4)
	ctx := testCtx(t, 60*time.Second)
	const clients, incrs = 1000, 5
	cs := make([]*redis.Client, clients)
	for i := range cs {
		cs[i] = p.client(t, 3, func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1 })
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			k := "many:" + strconv.Itoa(i)
			for j := 1; j <= incrs; j++ {
				n, err := c.Incr(ctx, k).Result()
				if err != nil || n != int64(j) {
					errs <- fmt.Errorf("client %d: INCR #%d = %d, %v", i, j, n, err)
					return
				}
			}
			// A pipeline too: its replies in order.
			cmds, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Get(ctx, k)
				pipe.Incr(ctx, k)
				pipe.Echo(ctx, k)
				pipe.Get(ctx, k)
				return nil
			})
			if err != nil {
				errs <- fmt.Errorf("client %d: pipeline: %v", i, err)
				return
			}
			want := []string{strconv.Itoa(incrs), strconv.Itoa(incrs + 1), k, strconv.Itoa(incrs + 1)}
			for j, cmd := range cmds {
				var got string
				switch c := cmd.(type) {
				case *redis.StringCmd:
					got = c.Val()
				case *redis.IntCmd:
					got = strconv.FormatInt(c.Val(), 10)
				}
				if got != want[j] {
					errs <- fmt.Errorf("client %d: pipeline reply %d = %q, want %q", i, j, got, want[j])
					return
				}
			}
		}()
	}
	// While the clients run, sample how many connections the real server
	// has (this sampler's own included): never more than 4 + 1.
	direct := redis.NewClient(&redis.Options{Addr: p.up.Addr, PoolSize: 1})
	defer direct.Close()
	connsBefore := redisTotalConnections(t, ctx, direct)
	sampled := make(chan int)
	stopSampling := make(chan struct{})
	go func() {
		most := 0
		defer func() { sampled <- most }()
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			list, err := direct.ClientList(ctx).Result()
			if err != nil {
				continue
			}
			if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n > most {
				most = n
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stopSampling)
	if most := <-sampled; most > 4+1 {
		t.Errorf("during the load the real server had up to %d connections at once: more than pool.size 4 + this test's own", most)
	} else {
		t.Logf("during the load the real server had at most %d connections (this test's own included)", most)
	}
	if dialed := redisTotalConnections(t, ctx, direct) - connsBefore; dialed > 4 {
		t.Errorf("Outrigger opened %d connections to the real server for 1000 clients of one database, user and protocol, want at most pool.size 4", dialed)
	} else {
		t.Logf("Outrigger opened %d connections to the real server", dialed)
	}
	close(errs)
	n := 0
	for err := range errs {
		if n < 10 {
			t.Error(err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of %d clients got wrong replies", n, clients)
	}

	// The clients are all still connected; count the server's clients.
	myID, err := direct.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	list, err := direct.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	others := 0
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if !strings.Contains(line, fmt.Sprintf("id=%d ", myID)) {
			others++
		}
	}
	t.Logf("upstream CLIENT LIST: %d connections besides this test's own", others)
	if others > 4 || others == 0 {
		t.Fatalf("the real server has %d connections from Outrigger, want 1..4 (pool.size 4, no pinned):\n%s", others, list)
	}
}

// TestRedisCLI runs redis-cli (commands, --pipe mass insertion) and
// redis-benchmark (default tests, with and without -P 16) through the proxy.
func TestRedisCLI(t *testing.T) {
	integrationOnly(t)
	cli, errCLI := exec.LookPath("redis-cli")
	bench, errBench := exec.LookPath("redis-benchmark")
	if errCLI != nil && errBench != nil {
		t.Skip("redis-cli and redis-benchmark not installed (apt-get install redis-tools)")
	}
	p := startRedisProxy(t, testenv.RedisOptions{}, 4)
	host, port := splitHostPort(t, p.addr)
	ctx := testCtx(t, 60*time.Second)
	direct := p.up.Client(t)

	run := func(t *testing.T, bin string, stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, headLines(string(out), 30))
		}
		return string(out)
	}

	t.Run("Pipe", func(t *testing.T) {
		if errCLI != nil {
			t.Skip("redis-cli not installed (apt-get install redis-tools)")
		}
		const n = 10000
		var in []byte
		for i := 0; i < n; i++ {
			k, v := "mass:"+strconv.Itoa(i), "value"+strconv.Itoa(i)
			in = fmt.Appendf(in, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		}
		out := run(t, cli, in, "--pipe", "--pipe-timeout", "15")
		t.Logf("redis-cli --pipe:\n%s", out)
		if !strings.Contains(out, fmt.Sprintf("errors: 0, replies: %d", n)) {
			t.Fatalf("redis-cli --pipe summary is not \"errors: 0, replies: %d\":\n%s", n, out)
		}
		if size, err := direct.DBSize(ctx).Result(); err != nil || size != n {
			t.Fatalf("DBSIZE on the real server = %d, %v; want %d", size, err, n)
		}
		if v, _ := direct.Get(ctx, "mass:9999").Result(); v != "value9999" {
			t.Fatalf("mass:9999 = %q", v)
		}
	})

	t.Run("Commands", func(t *testing.T) {
		if errCLI != nil {
			t.Skip("redis-cli not installed (apt-get install redis-tools)")
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"PING"}, "PONG"},
			{[]string{"SET", "cli:k", "hello world"}, "OK"},
			{[]string{"GET", "cli:k"}, "hello world"},
			{[]string{"INCR", "cli:n"}, "1"},
			{[]string{"ECHO", "echoed"}, "echoed"},
			{[]string{"-n", "2", "SET", "cli:k", "db2"}, "OK"},
			{[]string{"-n", "2", "GET", "cli:k"}, "db2"},
			{[]string{"GET", "cli:k"}, "hello world"},
			{[]string{"-3", "GET", "cli:k"}, "hello world"},
		} {
			out := strings.TrimSpace(run(t, cli, nil, c.args...))
			if out != c.want {
				t.Errorf("redis-cli %v = %q, want %q", c.args, out, c.want)
			}
		}
		// What interactive redis-cli sends at start (COMMAND DOCS, for its
		// hints) works.
		if out := run(t, cli, nil, "COMMAND", "DOCS", "get"); !strings.Contains(out, "summary") {
			t.Errorf("redis-cli COMMAND DOCS get:\n%s", out)
		}
		// Commands read from stdin, one per line.
		out := run(t, cli, []byte("SET cli:s 5\nINCRBY cli:s 10\nGET cli:s\nLPUSH cli:l a b c\nLRANGE cli:l 0 -1\n"))
		want := "OK\n15\n15\n3\nc\nb\na\n"
		if out != want {
			t.Errorf("redis-cli with commands on stdin:\n%q\nwant\n%q", out, want)
		}
	})

	t.Run("Interactive", func(t *testing.T) {
		if errCLI != nil {
			t.Skip("redis-cli not installed (apt-get install redis-tools)")
		}
		// script(1) gives redis-cli a terminal, so it runs its interactive
		// loop (prompt, COMMAND DOCS for hints, formatted replies);
		// TERM=dumb keeps its line editor from querying the terminal.
		scriptBin, err := exec.LookPath("script")
		if err != nil {
			t.Skip("script (util-linux) not installed: cannot give redis-cli a terminal")
		}
		cmd := exec.CommandContext(ctx, scriptBin, "-qec", fmt.Sprintf("%s -h %s -p %s", cli, host, port), "/dev/null")
		cmd.Env = append(os.Environ(), "TERM=dumb")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer stdin.Close()
			for _, line := range []string{
				"SET cli:i 1", "INCR cli:i", "SELECT 2", "SET cli:i db2", "GET cli:i", "SELECT 0", "GET cli:i", "HSET cli:h f v", "HGETALL cli:h",
			} {
				io.WriteString(stdin, line+"\n")
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			io.WriteString(stdin, "quit\n")
		}()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("interactive redis-cli: %v\n%s", err, out.String())
		}
		got := strings.ReplaceAll(out.String(), "\r", "")
		t.Logf("interactive redis-cli:\n%s", got)
		// Echoed input and output interleave differently from run to run:
		// look for each reply, and for the prompt that shows database 2.
		for _, want := range []string{
			"(integer) 2\n",
			fmt.Sprintf("%s:%s[2]> ", host, port),
			"\"db2\"\n",
			"\"2\"\n",
			"1) \"f\"\n2) \"v\"\n",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("interactive redis-cli output lacks %q", want)
			}
		}
		if strings.Contains(got, "ERR") || strings.Contains(strings.ToLower(got), "error") {
			t.Errorf("interactive redis-cli reported an error:\n%s", got)
		}
	})

	benchRun := func(t *testing.T, extra ...string) {
		if errBench != nil {
			t.Skip("redis-benchmark not installed (apt-get install redis-tools)")
		}
		out := run(t, bench, nil, append([]string{"-q", "-n", "2000", "-c", "20"}, extra...)...)
		// -q prints progress with \r and a final line per test.
		var results []string
		for _, line := range strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' }) {
			if strings.Contains(line, "requests per second") {
				results = append(results, strings.TrimSpace(line))
			}
		}
		t.Logf("redis-benchmark -q -n 2000 -c 20 %v:\n%s", extra, strings.Join(results, "\n"))
		if strings.Contains(out, "ERR") || strings.Contains(strings.ToLower(out), "error") {
			t.Errorf("redis-benchmark %v reported errors:\n%s", extra, out)
		}
		// The default test set: PING_INLINE, PING_MBULK, SET, GET, INCR,
		// LPUSH, RPUSH, LPOP, RPOP, SADD, HSET, SPOP, ZADD, ZPOPMIN,
		// LPUSH (for LRANGE), LRANGE_100/300/500/600, MSET.
		if len(results) < 20 {
			t.Errorf("redis-benchmark %v: %d tests with a requests-per-second figure, want the default set (>= 20):\n%s",
				extra, len(results), out)
		}
		for _, r := range results {
			f := strings.Fields(r)
			i := 0
			for i < len(f) && !strings.HasSuffix(f[i], ":") {
				i++
			}
			if i+1 >= len(f) {
				t.Errorf("no requests-per-second figure in %q", r)
				continue
			}
			if v, err := strconv.ParseFloat(f[i+1], 64); err != nil || v <= 0 {
				t.Errorf("bad requests-per-second figure in %q", r)
			}
		}
	}
	t.Run("Benchmark", func(t *testing.T) { benchRun(t) })
	t.Run("BenchmarkP16", func(t *testing.T) { benchRun(t, "-P", "16") })
}

// TestRedisUpstreamRestart kills the upstream Redis under load: every
// client gets errors, not hangs; a new server on the same port brings
// traffic back with no manual step.
func TestRedisUpstreamRestart(t *testing.T) {
	integrationOnly(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, redisProxyConfig(listen, up.Addr, 2, 2*time.Second))
	_ = o

	const workers = 16
	const hangAfter = 15 * time.Second // far past command_timeout (2s) + connect_timeout (2s)
	type stats struct {
		mu             sync.Mutex
		okAfterRestart int
		errAfterKill   int
		lastErr        error
		hangs          []string
		maxTook        time.Duration
	}
	var (
		st                [workers]stats
		killedAt, restart time.Time
		phaseMu           sync.Mutex
	)
	phase := func() (time.Time, time.Time) { phaseMu.Lock(); defer phaseMu.Unlock(); return killedAt, restart }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		c := proxyClient(t, listen, 3, func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1; o.ReadTimeout = 25 * time.Second })
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &st[w]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var err error
				if w == 0 {
					// One client sits in a blocking command on a pinned connection.
					err = c.BLPop(ctx, 1*time.Second, "restart:queue").Err()
					if errors.Is(err, redis.Nil) {
						err = nil
					}
				} else if w%4 == 1 {
					// Some clients pipeline, so many commands are in flight
					// on the shared connections when the server goes.
					_, err = c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
						for j := 0; j < 50; j++ {
							pipe.Incr(ctx, "restart:"+strconv.Itoa(w))
						}
						return nil
					})
				} else {
					err = c.Incr(ctx, "restart:"+strconv.Itoa(w)).Err()
				}
				cancel()
				took := time.Since(sent)
				k, r := phase()
				s.mu.Lock()
				if took > s.maxTook {
					s.maxTook = took
				}
				if took > hangAfter || isTimeoutErr(err) {
					s.hangs = append(s.hangs, fmt.Sprintf("command took %v: %v", took, err))
				}
				if err != nil && !k.IsZero() && sent.After(k.Add(-time.Second)) {
					s.errAfterKill++
					s.lastErr = err
				}
				if err == nil && !r.IsZero() && sent.After(r) {
					s.okAfterRestart++
				}
				s.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	direct := redis.NewClient(&redis.Options{Addr: up.Addr})
	defer direct.Close()
	ctx := testCtx(t, 60*time.Second)
	eventually(t, "load on the upstream", func() bool {
		n, _ := direct.Get(ctx, "restart:1").Int()
		return n > 50
	})

	// A subscriber, which go-redis re-subscribes when its connection breaks.
	sub := proxyClient(t, listen, 3)
	ps := sub.Subscribe(ctx, "restart:chan")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	msgs := make(chan string, 100)
	var subErrs struct {
		sync.Mutex
		list []string
	}
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for subCtx.Err() == nil {
			msg, err := ps.ReceiveMessage(subCtx)
			if err != nil {
				subErrs.Lock()
				subErrs.list = append(subErrs.list, err.Error())
				subErrs.Unlock()
				time.Sleep(50 * time.Millisecond)
				continue
			}
			select {
			case msgs <- msg.Payload:
			default:
			}
		}
	}()
	// The receiver is over before the test ends (ps.Close ends its
	// ReceiveMessage).
	defer func() { subCancel(); ps.Close(); <-subDone }()

	port := up.Port
	phaseMu.Lock()
	killedAt = time.Now()
	phaseMu.Unlock()
	if err := up.Stop(); err != nil {
		t.Logf("stopping the upstream: %v", err)
	}
	t.Logf("upstream stopped after %v", time.Since(killedAt).Round(time.Millisecond))
	eventually(t, "every client to get an error after the kill", func() bool {
		for w := range st {
			st[w].mu.Lock()
			n := st[w].errAfterKill
			st[w].mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	for w := range st {
		st[w].mu.Lock()
		t.Logf("client %d after the kill: %d errors, e.g. %v", w, st[w].errAfterKill, st[w].lastErr)
		st[w].mu.Unlock()
		if w > 2 {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // some traffic against a dead upstream

	// A RESP3 client that first connects while the upstream is down: its
	// command fails, but once the upstream is back it must still be RESP3.
	late := proxyClient(t, listen, 3, func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1 })
	if err := late.Set(ctx, "restart:hash", "x", 0).Err(); err == nil {
		t.Errorf("SET succeeded through a proxy whose upstream is down")
	} else {
		t.Logf("a client connecting during the outage: %v", err)
	}

	// A new server on the same port.
	startRedisOnPort(t, bin, port)
	restarted := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	defer restarted.Close()
	eventually(t, "the new redis-server to answer", func() bool { return restarted.Ping(ctx).Err() == nil })
	phaseMu.Lock()
	restart = time.Now()
	phaseMu.Unlock()

	eventually(t, "every client to recover after the restart", func() bool {
		for w := range st {
			st[w].mu.Lock()
			n := st[w].okAfterRestart
			st[w].mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("all clients recovered %v after the restart", time.Since(restart).Round(time.Millisecond))
	// The client that connected during the outage: RESP3 replies (a map
	// for HGETALL), as it asked with HELLO 3.
	if err := restarted.HSet(ctx, "restart:h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := late.Do(ctx, "HGETALL", "restart:h").Result(); err != nil {
		t.Errorf("HGETALL from the client that connected during the outage: %v", err)
	} else if _, isMap := v.(map[interface{}]interface{}); !isMap {
		t.Errorf("a RESP3 client that connected during the outage gets RESP2 replies after it: HGETALL = %#v (%T), want a RESP3 map", v, v)
	}

	// The subscriber: go-redis re-subscribes on a new connection; it must
	// receive messages again.
	resubscribed := false
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if restarted.Publish(ctx, "restart:chan", "after").Val() >= 1 {
			resubscribed = true
			break
		}
	}
	if !resubscribed {
		subErrs.Lock()
		t.Errorf("the subscriber is not subscribed on the new server 6 s after the restart (PUBLISH reaches 0 clients); "+
			"its receive errors: %q", subErrs.list)
		subErrs.Unlock()
	} else {
		select {
		case m := <-msgs:
			if m != "after" {
				t.Errorf("subscriber got %q after the restart", m)
			}
		case <-time.After(10 * time.Second):
			t.Error("the subscriber got no message after the restart")
		}
	}
	if n, err := restarted.Get(ctx, "restart:1").Int(); err != nil || n == 0 {
		t.Fatalf("the new server has restart:1 = %d, %v", n, err)
	}
	close(stop)
	wg.Wait()
	for w := range st {
		st[w].mu.Lock()
		defer st[w].mu.Unlock()
		if len(st[w].hangs) > 0 {
			t.Errorf("client %d hung: %v", w, st[w].hangs)
		}
		t.Logf("client %d: slowest command %v", w, st[w].maxTook.Round(time.Millisecond))
	}
}

// startRedisOnPort runs redis-server on a given port of 127.0.0.1 (testenv
// picks its own ports) until the test ends; it is stopped by its PID.
func startRedisOnPort(t *testing.T, bin string, port int) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	pid := srv.Process.Pid
	t.Logf("redis-server pid %d on port %d", pid, port)
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("redis-server on port %d log:\n%s", port, b)
			}
		}
	})
	return srv
}

// TestRedisUpstreamKilledMidTransaction kills the upstream while clients
// hold pinned connections inside WATCH: what they send next (MULTI, INCR,
// EXEC) must be answered with errors, not left hanging.
func TestRedisUpstreamKilledMidTransaction(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 60*time.Second)
	const clients = 5
	const clientTimeout = 5 * time.Second // a hang shows as a client read timeout
	conns := make([]*redis.Conn, clients)
	for i := range conns {
		c := p.client(t, 3, func(o *redis.Options) {
			o.PoolSize = 1
			o.MaxRetries = -1
			o.ReadTimeout, o.WriteTimeout = clientTimeout, clientTimeout
		})
		cn := c.Conn()
		t.Cleanup(func() { cn.Close() })
		k := "txkill:" + strconv.Itoa(i)
		if err := cn.Do(ctx, "WATCH", k).Err(); err != nil {
			t.Fatalf("WATCH: %v", err)
		}
		if err := cn.Get(ctx, k).Err(); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("GET under WATCH: %v", err)
		}
		conns[i] = cn
	}
	if err := p.up.Stop(); err != nil {
		t.Logf("stopping the upstream: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the proxy sees its pinned connections close
	type result struct {
		err  error
		took time.Duration
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	for i, cn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := cn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Incr(ctx, "txkill:"+strconv.Itoa(i))
				return nil
			})
			results[i] = result{err, time.Since(start)}
		}()
	}
	wg.Wait()
	for i, r := range results {
		switch {
		case r.err == nil:
			t.Errorf("client %d: MULTI/INCR/EXEC succeeded with the upstream stopped", i)
		case isTimeoutErr(r.err):
			t.Errorf("client %d: MULTI/INCR/EXEC on a pinned connection whose upstream died hung: no reply within %v (%v)",
				i, r.took.Round(time.Millisecond), r.err)
		default:
			t.Logf("client %d: error after %v: %v", i, r.took.Round(time.Millisecond), r.err)
		}
	}
}

// TestRedisPinnedGivenBack fills pinned_size with clients whose blocking
// command and transaction are over, then idle: another client's blocking
// command must still get a dedicated connection.
func TestRedisPinnedGivenBack(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, redisProxyConfigPinned(listen, up.Addr, 2, 2, 3*time.Second))
	ctx := testCtx(t, 30*time.Second)
	one := func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1 }
	a := proxyClient(t, listen, 3, one)
	b := proxyClient(t, listen, 3, one)
	c := proxyClient(t, listen, 3, one)
	// A: a BLPOP that is answered at once; then A idles.
	if err := a.RPush(ctx, "pin:q", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := a.BLPop(ctx, time.Second, "pin:q").Result(); err != nil || len(v) != 2 {
		t.Fatalf("BLPOP = %v, %v", v, err)
	}
	// B: MULTI/EXEC; then B idles.
	if _, err := b.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Incr(ctx, "pin:n")
		return nil
	}); err != nil {
		t.Fatalf("MULTI/EXEC: %v", err)
	}
	// C: a blocking command that times out after 500 ms.
	start := time.Now()
	err := c.BLPop(ctx, 500*time.Millisecond, "pin:empty").Err()
	took := time.Since(start)
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("with pinned_size 2 and two idle clients whose BLPOP and EXEC are answered, "+
			"a third client's BLPOP got %v after %v, want nil after its 500 ms timeout "+
			"(the idle clients still hold their pinned connections)", err, took.Round(time.Millisecond))
	}
	if took > 3*time.Second {
		t.Fatalf("BLPOP with a 500 ms timeout took %v: it waited for a pinned connection", took)
	}
}

// TestRedisUpstreamUnresponsive stops (SIGSTOP) the upstream: a command
// on a shared connection and one inside MULTI/EXEC on a pinned connection
// both get an error after about command_timeout instead of waiting for the
// server; after SIGCONT traffic flows again.
func TestRedisUpstreamUnresponsive(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	const commandTimeout = time.Second
	startOutrigger(t, redisProxyConfig(listen, up.Addr, 2, commandTimeout))
	ctx := testCtx(t, 30*time.Second)
	const clientTimeout = 6 * time.Second // well past command_timeout: a hang shows as a client read timeout
	opts := func(o *redis.Options) {
		o.PoolSize = 1
		o.MaxRetries = -1
		o.ReadTimeout, o.WriteTimeout = clientTimeout, clientTimeout
	}
	shared := proxyClient(t, listen, 3, opts)
	txc := proxyClient(t, listen, 3, opts)
	if err := shared.Set(ctx, "stop:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cn := txc.Conn()
	defer cn.Close()
	if err := cn.Do(ctx, "WATCH", "stop:k").Err(); err != nil {
		t.Fatal(err)
	}

	pid := up.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP redis-server: %v", err)
	}
	continued := false
	resume := func() {
		if !continued {
			continued = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)

	var wg sync.WaitGroup
	var sharedErr, txErr error
	var sharedTook, txTook time.Duration
	wg.Add(2)
	go func() {
		defer wg.Done()
		start := time.Now()
		sharedErr = shared.Get(ctx, "stop:k").Err()
		sharedTook = time.Since(start)
	}()
	go func() {
		defer wg.Done()
		start := time.Now()
		_, txErr = cn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, "stop:k", "w", 0)
			return nil
		})
		txTook = time.Since(start)
	}()
	wg.Wait()
	resume()
	check := func(what string, err error, took time.Duration) {
		switch {
		case err == nil:
			t.Errorf("%s succeeded against a stopped upstream", what)
		case isTimeoutErr(err):
			t.Errorf("%s against a stopped upstream got no reply from the proxy within %v (command_timeout %v): %v",
				what, took.Round(time.Millisecond), commandTimeout, err)
		default:
			t.Logf("%s: error after %v: %v", what, took.Round(time.Millisecond), err)
		}
	}
	check("GET on a shared connection", sharedErr, sharedTook)
	check("MULTI/SET/EXEC on a pinned connection", txErr, txTook)

	eventually(t, "traffic after SIGCONT", func() bool {
		v, err := shared.Get(ctx, "stop:k").Result()
		return err == nil && v != ""
	})
}

// TestRedisUpstreamRestartWhileIdle restarts the upstream while no client
// sends anything: once the new server is up, the next commands (on the
// shared connections and in a transaction) succeed, as they do for a client
// connected to Redis directly.
func TestRedisUpstreamRestartWhileIdle(t *testing.T) {
	integrationOnly(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, redisProxyConfig(listen, up.Addr, 2, 3*time.Second))
	ctx := testCtx(t, 30*time.Second)
	const clients = 4
	cs := make([]*redis.Client, clients)
	for i := range cs {
		cs[i] = proxyClient(t, listen, 3, func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1 })
		// Open both shared connections and a pinned one.
		if err := cs[i].Incr(ctx, "idle:n").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := cs[i].TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Incr(ctx, "idle:n")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := cs[i].Ping(ctx).Err(); err != nil { // gives the pinned connection back
			t.Fatal(err)
		}
	}
	// The same, connected to Redis directly.
	direct := up.Client(t)
	if err := direct.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	port := up.Port
	if err := up.Stop(); err != nil {
		t.Logf("stopping the upstream: %v", err)
	}
	startRedisOnPort(t, bin, port)
	eventually(t, "the new redis-server", func() bool {
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err() == nil
	})
	time.Sleep(300 * time.Millisecond)

	if err := direct.Set(ctx, "idle:direct", "1", 0).Err(); err != nil {
		t.Logf("(a go-redis client connected directly also failed its first command: %v)", err)
	}
	failed := 0
	for i, c := range cs {
		if err := c.Incr(ctx, "idle:n").Err(); err != nil {
			t.Errorf("client %d: the first INCR after the upstream restarted (the server had been up %v) failed: %v",
				i, 300*time.Millisecond, err)
			failed++
		}
		if _, err := c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Incr(ctx, "idle:n")
			return nil
		}); err != nil {
			t.Errorf("client %d: the first MULTI/EXEC after the upstream restarted failed: %v", i, err)
			failed++
		}
	}
	if failed > 0 {
		t.Logf("upstream connections that closed while idle are only found dead when a command is sent on them")
	}
}

// redisTotalConnections reads total_connections_received from INFO stats.
func redisTotalConnections(t *testing.T, ctx context.Context, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(ctx, "stats").Result()
	if err != nil {
		t.Fatalf("INFO stats: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("INFO stats: %q", line)
			}
			return n
		}
	}
	t.Fatalf("INFO stats has no total_connections_received:\n%s", info)
	return 0
}

// headLines returns the first n lines of s, and how many more there were.
func headLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("... (%d more lines)\n", len(lines)-n)
}

func isTimeoutErr(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// TestRedisAdminAndMetrics checks /pools and the per-command counters.
func TestRedisAdminAndMetrics(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 30*time.Second)
	rdb := p.client(t, 3)
	series := fmt.Sprintf(`outrigger_redis_command_results_total{command="get",error_class="none",listener="%s",outcome="ok"}`, redisListener)
	before := p.o.metric(series)
	if before < 0 {
		before = 0
	}
	if err := rdb.Set(ctx, "m:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if err := rdb.Get(ctx, "m:k").Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "GET counted 7 times", func() bool { return p.o.metric(series)-before >= 7 })
	if v := p.o.metric(series); v-before != 7 {
		t.Errorf("%s went from %v to %v, want +7", series, before, v)
	}
	if err := rdb.Incr(ctx, "m:k").Err(); err == nil {
		t.Fatal("INCR of a string succeeded")
	}
	errSeries := fmt.Sprintf(`outrigger_redis_command_results_total{command="incr",error_class="ERR",listener="%s",outcome="error"}`, redisListener)
	eventually(t, "INCR counted as error", func() bool { return p.o.metric(errSeries) >= 1 })
	if v := p.o.metric(fmt.Sprintf(`outrigger_redis_clients{listener="%s"}`, redisListener)); v < 1 {
		t.Errorf("outrigger_redis_clients = %v, want >= 1", v)
	}

	// Pinned connections go back to their pool after WATCH/MULTI/EXEC and
	// after a blocking command answers: used one after another, one is
	// enough.
	for i := 0; i < 10; i++ {
		if err := rdb.Watch(ctx, func(tx *redis.Tx) error {
			_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Incr(ctx, "m:n")
				return nil
			})
			return err
		}, "m:n"); err != nil {
			t.Fatalf("WATCH/MULTI/EXEC #%d: %v", i, err)
		}
		if err := rdb.RPush(ctx, "m:q", "x").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.BLPop(ctx, time.Second, "m:q").Err(); err != nil {
			t.Fatalf("BLPOP #%d: %v", i, err)
		}
	}
	// (Whether the last BLPOP's connection goes back as soon as it answers,
	// with no further command, is TestRedisPinnedGivenBack's concern.)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if v := p.o.metric(fmt.Sprintf(`outrigger_redis_pins_total{listener="%s",reason="watch"}`, redisListener)); v != 10 {
		t.Errorf("watch pins = %v, want 10", v)
	}
	if v := p.o.metric(fmt.Sprintf(`outrigger_redis_pins_total{listener="%s",reason="blocking"}`, redisListener)); v != 10 {
		t.Errorf("blocking pins = %v, want 10", v)
	}

	code, body := p.o.admin("/pools")
	if code != 200 {
		t.Fatalf("/pools: %d %s", code, body)
	}
	var pools map[string][]struct {
		DB     int `json:"db"`
		Proto  int `json:"resp"`
		Shared int `json:"shared_open"`
		Size   int `json:"shared_size"`
		Pinned struct {
			Open, Idle, InUse int
		} `json:"pinned"`
	}
	if err := json.Unmarshal([]byte(body), &pools); err != nil {
		t.Fatalf("/pools is not the redis listener's pool list: %v\n%s", err, body)
	}
	ps, ok := pools[redisListener]
	if !ok || len(ps) == 0 {
		t.Fatalf("/pools has no pools for listener %s:\n%s", redisListener, body)
	}
	found := false
	for _, s := range ps {
		if s.DB == 0 && s.Proto == 3 && s.Size == 2 && s.Shared >= 1 && s.Shared <= 2 {
			found = true
			if s.Pinned.InUse != 0 || s.Pinned.Open != 1 {
				t.Errorf("pinned pool after 10 transactions and 10 BLPOPs, one at a time, all answered: %+v, "+
					"want 1 open, 0 in use", s.Pinned)
			}
		}
	}
	if !found {
		t.Fatalf("/pools for %s has no db 0 RESP3 pool with 1..2 of 2 shared connections open:\n%s", redisListener, body)
	}
	t.Logf("/pools: %s", body)

	// The real server sees the 2 shared connections, at most, the pinned
	// one, and this test's own.
	direct := p.up.Client(t)
	list, err := direct.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n > 2+1+1 {
		t.Errorf("the real server has %d clients, want at most 2 shared + 1 pinned + 1 direct:\n%s", n, list)
	}
}
