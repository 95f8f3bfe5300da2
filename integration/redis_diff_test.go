package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/redis"
)

// TestRedisDiff proves sameness differentially for Redis: generated
// conversations (strings, lists, hashes, sorted sets, expiry, MULTI/EXEC,
// WATCH, SELECT, HELLO 2/3, CLIENT SETNAME, Lua, errors of every kind,
// RESET, pipelines of random depth) go to Redis directly and through
// Outrigger with a pool of 1 and of 4 while other clients use the same
// shared connections. The replies must be equal byte for byte, with only
// Outrigger's client ids masked (HELLO's id, CLIENT ID's number).
//
// RDDIFF_N (default 1000) conversations run from RDDIFF_SEED (default 1);
// RDDIFF_DURATION keeps generating until the time is up.
func TestRedisDiff(t *testing.T) {
	integrationOnly(t)
	n, _ := strconv.Atoi(os.Getenv("RDDIFF_N"))
	if n <= 0 {
		n = 1000
	}
	seed, _ := strconv.ParseUint(os.Getenv("RDDIFF_SEED"), 10, 64)
	if seed == 0 {
		seed = 1
	}
	var until time.Time
	if d, err := time.ParseDuration(os.Getenv("RDDIFF_DURATION")); err == nil && d > 0 {
		until = time.Now().Add(d)
	}
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	targets := map[string]string{}
	for _, size := range []int{1, 4} {
		listen := testenv.FreeAddr(t)
		startOutrigger(t, redisProxyConfig(listen, up.Addr, size, 5*time.Second))
		targets["pool"+strconv.Itoa(size)] = listen
	}
	admin := up.Client(t)
	ctx := testCtx(t, 2*time.Hour)

	// Other clients on the same shared connections, keyless so the
	// conversations' databases stay theirs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, addr := range targets {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write([]byte("*2\r\n$4\r\nECHO\r\n$5\r\nnoise\r\n")); err != nil {
						return
					}
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
				}
			}()
		}
	}
	defer func() { close(stop); wg.Wait() }()

	conversations, commands, diffs := 0, 0, 0
	from, _ := strconv.Atoi(os.Getenv("RDDIFF_FROM")) // to replay one: RDDIFF_FROM=k RDDIFF_N=k+1
	for i := from; i < n || time.Now().Before(until); i++ {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		conv := genRedisConversation(rng)
		if from > 0 {
			t.Logf("conversation %d: %s", i, redisDiffText(conv))
		}
		if err := admin.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		want := redisDiffRun(t, up.Addr, conv)
		for name, addr := range targets {
			if err := admin.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			got := redisDiffRun(t, addr, conv)
			if d := redisDiffFirst(conv, want, got); d != "" {
				diffs++
				if diffs <= 5 {
					t.Errorf("conversation %d (seed %d), %s: %s\nconversation: %s", i, seed, name, d, redisDiffText(conv))
				}
			}
		}
		conversations++
		commands += len(conv.cmds)
	}
	t.Logf("%d conversations, %d commands, %d differences", conversations, commands, diffs)
}

// redisConv is a generated conversation: its commands and where the client
// stops to read (a pipeline ends after cmds[i] when flushAfter[i]).
type redisConv struct {
	cmds       [][]string
	flushAfter []bool
}

func genRedisConversation(rng *rand.Rand) redisConv {
	key := func() string { return "rd:k" + strconv.Itoa(rng.IntN(4)) }
	val := func() string {
		if rng.IntN(3) == 0 {
			return strconv.Itoa(rng.IntN(100) - 10)
		}
		return []string{"a", "bb", "x y", "", "123abc", "3.5"}[rng.IntN(6)]
	}
	gens := []func() []string{
		func() []string { return []string{"PING"} },
		func() []string { return []string{"PING", val()} },
		func() []string { return []string{"ECHO", val()} },
		func() []string { return []string{"SET", key(), val()} },
		func() []string {
			return []string{"SET", key(), val(), []string{"NX", "XX", "GET", "EX", "PX"}[rng.IntN(5)]}
		},
		func() []string { return []string{"SET", key(), val(), "EX", "1000", "GET"} },
		func() []string { return []string{"GET", key()} },
		func() []string { return []string{"GETDEL", key()} },
		func() []string { return []string{"DEL", key(), key()} },
		func() []string { return []string{"EXISTS", key(), key()} },
		func() []string { return []string{"INCR", key()} },
		func() []string { return []string{"INCRBY", key(), val()} },
		func() []string { return []string{"INCRBYFLOAT", key(), val()} },
		func() []string { return []string{"APPEND", key(), val()} },
		func() []string { return []string{"STRLEN", key()} },
		func() []string { return []string{"GETRANGE", key(), "0", strconv.Itoa(rng.IntN(5) - 2)} },
		func() []string { return []string{"MSET", key(), val(), key(), val()} },
		func() []string { return []string{"MGET", key(), key(), key()} },
		func() []string { return []string{"TYPE", key()} },
		func() []string { return []string{"EXPIRE", key(), "1000"} },
		func() []string { return []string{"PERSIST", key()} },
		func() []string { return []string{"LPUSH", key(), val(), val()} },
		func() []string { return []string{"RPUSH", key(), val()} },
		func() []string { return []string{"LPOP", key()} },
		func() []string { return []string{"RPOP", key(), strconv.Itoa(rng.IntN(3))} },
		func() []string { return []string{"LRANGE", key(), "0", "-1"} },
		func() []string { return []string{"LLEN", key()} },
		func() []string { return []string{"HSET", key(), "f" + strconv.Itoa(rng.IntN(3)), val()} },
		func() []string { return []string{"HGET", key(), "f" + strconv.Itoa(rng.IntN(3))} },
		func() []string { return []string{"HGETALL", key()} },
		func() []string { return []string{"HINCRBY", key(), "f0", val()} },
		func() []string { return []string{"ZADD", key(), strconv.Itoa(rng.IntN(9)), val()} },
		func() []string { return []string{"ZRANGE", key(), "0", "-1", "WITHSCORES"} },
		func() []string { return []string{"ZSCORE", key(), val()} },
		func() []string { return []string{"DBSIZE"} },
		func() []string { return []string{"MULTI"} },
		func() []string { return []string{"EXEC"} },
		func() []string { return []string{"DISCARD"} },
		func() []string { return []string{"WATCH", key()} },
		func() []string { return []string{"UNWATCH"} },
		func() []string { return []string{"SELECT", strconv.Itoa(rng.IntN(4))} },
		func() []string { return []string{"SELECT", "99"} },
		func() []string { return []string{"HELLO", strconv.Itoa(2 + rng.IntN(2))} },
		func() []string { return []string{"HELLO", "4"} },
		func() []string { return []string{"CLIENT", "SETNAME", "n" + strconv.Itoa(rng.IntN(3))} },
		func() []string { return []string{"CLIENT", "GETNAME"} },
		// (CLIENT ID is TestRedisClientIDs's: queued inside MULTI it
		// answers the server's id, a documented difference.)
		func() []string { return []string{"EVAL", "return redis.call('GET', KEYS[1])", "1", key()} },
		func() []string {
			return []string{"EVAL", "return {1, 'two', {3, false}, redis.status_reply('OK')}", "0"}
		},
		func() []string { return []string{"EVAL", "return redis.error_reply('MYERR custom')", "0"} },
		func() []string { return []string{"EVAL", "return 3.99", "0"} },
		func() []string { return []string{"EVAL", "syntax error here", "0"} },
		func() []string { return []string{"PUBLISH", "rd:ch", val()} },
		func() []string { return []string{"UNSUBSCRIBE"} },
		func() []string { return []string{"PUNSUBSCRIBE", "rd:*"} },
		func() []string { return []string{"NOSUCHCOMMAND", val()} },
		func() []string { return []string{"GET"} },
		func() []string { return []string{"SET", key()} },
		func() []string { return []string{"OBJECT", "ENCODING", key()} },
		func() []string { return []string{"RESET"} },
	}
	var c redisConv
	for range 3 + rng.IntN(25) {
		c.cmds = append(c.cmds, gens[rng.IntN(len(gens))]())
		c.flushAfter = append(c.flushAfter, rng.IntN(3) == 0)
	}
	c.flushAfter[len(c.flushAfter)-1] = true
	return c
}

// redisDiffRun sends conv on a fresh connection to addr, a pipeline at a
// time, and returns the replies' raw bytes, masked.
func redisDiffRun(t *testing.T, addr string, conv redisConv) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	rr := redis.NewReplyReader(bufio.NewReader(c))
	var out []string
	var batch []byte
	pending := 0
	for i, cmd := range conv.cmds {
		batch = fmt.Appendf(batch, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			batch = fmt.Appendf(batch, "$%d\r\n%s\r\n", len(a), a)
		}
		pending++
		if !conv.flushAfter[i] {
			continue
		}
		if _, err := c.Write(batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
		for ; pending > 0; pending-- {
			rep, err := rr.Next()
			if err != nil {
				t.Fatalf("%s: reading reply %d: %v", addr, len(out), err)
			}
			out = append(out, string(rep.Raw))
		}
	}
	// CLIENT ID names the connection: Outrigger's own id, not the server's.
	for i, cmd := range conv.cmds {
		if i < len(out) && len(cmd) == 2 && cmd[0] == "CLIENT" && cmd[1] == "ID" && strings.HasPrefix(out[i], ":") {
			out[i] = ":ID\r\n"
		}
		if i < len(out) {
			out[i] = maskClientID(out[i])
		}
	}
	return out
}

func redisDiffFirst(conv redisConv, want, got []string) string {
	for i := range max(len(want), len(got)) {
		w, g := "(none)", "(none)"
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			return fmt.Sprintf("reply %d to %q: direct %q, through Outrigger %q", i, conv.cmds[min(i, len(conv.cmds)-1)], w, g)
		}
	}
	return ""
}

func redisDiffText(conv redisConv) string {
	var b strings.Builder
	for i, cmd := range conv.cmds {
		b.WriteString(strings.Join(cmd, " "))
		if conv.flushAfter[i] {
			b.WriteString(" | ")
		} else {
			b.WriteString("; ")
		}
	}
	return b.String()
}
