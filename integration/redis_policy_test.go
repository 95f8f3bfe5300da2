package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// The policy engine in front of Redis: a bypass corpus for a principal
// limited to reading report:* (and one limited to writing it), mTLS
// principals, rate limits under a redis-benchmark flood, and reload.

// rpUsers are ACL users of the upstream with every permission, so that
// whatever is refused, Outrigger's policy refused.
var rpUsers = []testenv.RedisACLUser{{Name: "reader"}, {Name: "writer"}, {Name: "app"}, {Name: "flood"}, {Name: "other"}}

// rpConfig is a redis listener in front of upstream, with policyYAML (a
// whole "policy:" section) after it.
func rpConfig(listen, upstream, tlsYAML, policyYAML string) string {
	listenerTLS := ""
	if tlsYAML != "" {
		listenerTLS = "    tls: mesh\n"
	}
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: info}
reload: {watch: false}
shutdown: {drain_timeout: 2s}
%sredis:
  - name: %s
    listen: %s
%s    upstream: {address: %s, connect_timeout: 2s}
    pool: {size: 2, pinned_size: 16, command_timeout: 5s}
    # FLUSHALL, REPLICAOF, SLAVEOF and CLIENT KILL left to the policy.
    refuse_commands: [shutdown, debug, failover, sync, psync]
%s`, tlsYAML, redisListener, listen, listenerTLS, upstream, policyYAML)
}

const rpReportsPolicy = `policy:
  default: allow
  rules:
    - name: readonly-reports
      when: {user: reader}
      redis: {categories: ["@read"], keys: ["report:*"]}
    - name: write-reports
      when: {user: writer}
      redis: {categories: ["@read", "@write", "@scripting"], keys: ["report:*"]}
`

// rpConn is a raw RESP connection to the proxy: every command on the same
// client connection, and the reply's exact text.
type rpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func rpDial(t *testing.T, addr string) *rpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rpConn{t: t, c: c, r: bufio.NewReader(c)}
}

// do sends args as a RESP array and returns the reply, flattened to text:
// "+OK", "-NOPERM ...", ":1", "$v" for a bulk string, "$nil", "*[...]".
func (rc *rpConn) do(args ...string) string {
	rc.t.Helper()
	var b []byte
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return rc.send(b)
}

// inline sends one inline command line.
func (rc *rpConn) inline(line string) string {
	rc.t.Helper()
	return rc.send([]byte(line + "\r\n"))
}

func (rc *rpConn) send(b []byte) string {
	rc.t.Helper()
	rc.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
	s, err := rc.reply()
	if err != nil {
		rc.t.Fatalf("reading the reply: %v", err)
	}
	return s
}

func (rc *rpConn) reply() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	switch line[0] {
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "$nil", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return "", err
		}
		return "$" + string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var parts []string
		for range max(n, 0) {
			p, err := rc.reply()
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "*[" + strings.Join(parts, " ") + "]", nil
	}
	return line, nil
}

// rpState is everything a bypass could change on the upstream, read
// directly from it: the digest of every database (keys, values, TTLs),
// the replication role, the ACL users, a config value, the functions and
// the loaded script.
func rpState(t *testing.T, ctx context.Context, direct *redis.Client, sha string) string {
	t.Helper()
	digest, err := direct.Do(ctx, "DEBUG", "DIGEST").Text()
	if err != nil {
		t.Fatalf("DEBUG DIGEST: %v", err)
	}
	info, err := direct.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	role := ""
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "role:") {
			role = strings.TrimSpace(l)
		}
	}
	acl, err := direct.Do(ctx, "ACL", "LIST").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	maxmem, err := direct.ConfigGet(ctx, "maxmemory").Result()
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := direct.Do(ctx, "FUNCTION", "LIST").Result()
	if err != nil {
		t.Fatal(err)
	}
	scripts, err := direct.ScriptExists(ctx, sha).Result()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("digest=%s %s acl=%v maxmemory=%v functions=%v script=%v", digest, role, acl, maxmem, funcs, scripts)
}

const (
	rpWriteScript = "return redis.call('set', KEYS[#KEYS], 'pwned')"
	rpFunction    = "#!lua name=pwnlib\nredis.register_function('pwn', function(keys, args) return redis.call('set', keys[1], 'pwned') end)"
)

// rpSeed writes the data the corpus reads and must not change.
func rpSeed(t *testing.T, ctx context.Context, direct *redis.Client) (sha, dump string) {
	t.Helper()
	p := direct.Pipeline()
	p.Set(ctx, "report:a", "1", 0)
	p.Set(ctx, "report:b", "2", 0)
	p.Set(ctx, "other:x", "secret", 0)
	p.RPush(ctx, "report:l", "3", "1", "2")
	p.SAdd(ctx, "report:s", "m", "n")
	p.ZAdd(ctx, "report:z", redis.Z{Score: 1, Member: "a"})
	p.GeoAdd(ctx, "report:g", &redis.GeoLocation{Name: "Palermo", Longitude: 13.361389, Latitude: 38.115556})
	p.PFAdd(ctx, "report:h", "a", "b")
	p.XAdd(ctx, &redis.XAddArgs{Stream: "report:st", ID: "1-1", Values: []string{"f", "v"}})
	p.HSet(ctx, "report:hash", "f", "v")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sha, err := direct.ScriptLoad(ctx, rpWriteScript).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := direct.Do(ctx, "FUNCTION", "LOAD", "REPLACE", rpFunction).Err(); err != nil {
		t.Fatal(err)
	}
	dump, err = direct.Dump(ctx, "report:a").Result()
	if err != nil {
		t.Fatal(err)
	}
	return sha, dump
}

// rpStep is one command of a case and the replies it may get: each is a
// prefix ("NOPERM", "EXECABORT", "+QUEUED").
type rpStep struct {
	args []string
	want []string
}

type rpCase struct {
	name string
	// both: the command is refused for the writer too (a key outside
	// report:* at some key position); else for the reader alone (category).
	both  bool
	steps []rpStep
}

func refused(args ...string) rpStep { return rpStep{args, []string{"-NOPERM"}} }

// rpCorpus is the bypass corpus. Every case has a refusal in it.
func rpCorpus(sha, dump string) []rpCase {
	one := func(name string, both bool, args ...string) rpCase {
		return rpCase{name: name, both: both, steps: []rpStep{refused(args...)}}
	}
	multi := func(name string, both bool, steps ...rpStep) rpCase {
		all := append([]rpStep{{[]string{"MULTI"}, []string{"+OK"}}}, steps...)
		all = append(all, rpStep{[]string{"EXEC"}, []string{"-EXECABORT Transaction discarded because of previous errors."}})
		return rpCase{name: name, both: both, steps: all}
	}
	queuedOrRefused := func(args ...string) rpStep { return rpStep{args, []string{"+QUEUED", "-NOPERM"}} }
	return []rpCase{
		// The reader may not write at all (category).
		one("lowercase set", false, "set", "report:a", "pwned"),
		one("mixed-case set", false, "SeT", "report:a", "pwned"),
		one("incr", false, "incr", "report:a"),
		one("del", false, "DEL", "report:a"),
		one("lpush", false, "LPUSH", "report:l", "pwned"),
		one("hset", false, "hset", "report:hash", "f", "pwned"),
		one("flushall", false, "FLUSHALL"),
		one("flushdb async", false, "flushdb", "ASYNC"),
		one("swapdb", false, "SWAPDB", "0", "1"),
		one("restore", false, "RESTORE", "report:new", "0", dump),
		one("write eval on a report key", false, "EVAL", rpWriteScript, "1", "report:a"),
		one("evalsha on a report key", false, "EVALSHA", sha, "1", "report:a"),
		one("fcall on a report key", false, "FCALL", "pwn", "1", "report:a"),
		one("eval_ro", false, "EVAL_RO", "return 1", "1", "report:a"),
		one("slaveof", false, "SLAVEOF", "127.0.0.1", "1"),
		one("replicaof", false, "replicaof", "127.0.0.1", "1"),
		one("config set", false, "CONFIG", "SET", "maxmemory", "12345"),
		one("acl setuser", false, "ACL", "SETUSER", "evil", "on", "nopass", "~*", "+@all"),
		one("function flush", false, "FUNCTION", "FLUSH"),
		one("script flush", false, "SCRIPT", "FLUSH"),
		one("georadius store into a report key", false, "GEORADIUS", "report:g", "15", "37", "200", "km", "STORE", "report:g2"),
		multi("multi-wrapped set", false, refused("SET", "report:a", "pwned")),
		multi("multi with a read, then a write", false,
			rpStep{[]string{"GET", "report:a"}, []string{"+QUEUED"}}, refused("INCR", "report:a")),

		// A key outside report:* at every key position: refused for the
		// writer too.
		one("mset second key", true, "MSET", "report:a", "pwned", "other:x", "pwned"),
		one("lowercase mset second key", true, "mset", "report:a", "pwned", "other:y", "pwned"),
		one("set outside", true, "sEt", "other:x", "pwned"),
		one("mget second key", true, "MGET", "report:a", "other:x"),
		one("exists second key", true, "EXISTS", "report:a", "other:x"),
		one("rename dest", true, "RENAME", "report:a", "other:y"),
		one("renamenx dest", true, "RENAMENX", "report:b", "other:y"),
		one("copy dest", true, "COPY", "report:a", "other:y"),
		one("smove dest", true, "SMOVE", "report:s", "other:s", "m"),
		one("lmove dest", true, "LMOVE", "report:l", "other:l", "LEFT", "RIGHT"),
		one("blmove dest", true, "BLMOVE", "report:l", "other:l", "LEFT", "RIGHT", "0.1"),
		one("rpoplpush dest", true, "RPOPLPUSH", "report:l", "other:l"),
		one("lmpop second key", true, "LMPOP", "2", "report:l", "other:l", "LEFT"),
		one("bitop dest", true, "BITOP", "OR", "other:y", "report:a", "report:b"),
		one("bitop last source", true, "BITOP", "AND", "report:c", "report:a", "other:x"),
		one("zunionstore source", true, "ZUNIONSTORE", "report:zz", "2", "report:z", "other:z"),
		one("zunionstore dest", true, "ZUNIONSTORE", "other:zz", "2", "report:z", "report:z"),
		one("zrangestore dest", true, "ZRANGESTORE", "other:y", "report:z", "0", "-1"),
		one("sinterstore dest", true, "SINTERSTORE", "other:y", "report:s"),
		one("pfmerge dest", true, "PFMERGE", "other:h", "report:h"),
		one("xread second stream", true, "XREAD", "COUNT", "1", "STREAMS", "report:st", "other:st", "0", "0"),
		one("xadd", true, "XADD", "other:st", "*", "f", "v"),
		one("object encoding", true, "OBJECT", "ENCODING", "other:x"),
		one("memory usage", true, "MEMORY", "USAGE", "other:x"),
		one("substr alias", true, "SUBSTR", "other:x", "0", "3"),
		one("getdel", true, "GETDEL", "other:x"),
		one("unlink second key", true, "UNLINK", "report:a", "other:x"),
		one("sort_ro by", true, "SORT_RO", "report:l", "BY", "other:*"),
		one("sort_ro get", true, "SORT_RO", "report:l", "GET", "other:*"),
		one("sort by nosort get", true, "SORT", "report:l", "by", "nosort", "get", "#"),
		one("sort store", true, "SORT", "report:l", "STORE", "other:y"),
		one("georadius store", true, "GEORADIUS", "report:g", "15", "37", "200", "km", "STORE", "other:g"),
		one("georadiusbymember storedist", true, "GEORADIUSBYMEMBER", "report:g", "Palermo", "100", "km", "STOREDIST", "other:g"),
		one("georadius_ro", true, "GEORADIUS_RO", "other:g", "15", "37", "200", "km"),
		one("geosearchstore dest", true, "GEOSEARCHSTORE", "other:g", "report:g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
		one("eval declared key outside", true, "EVAL", rpWriteScript, "1", "other:x"),
		one("eval second declared key", true, "EVAL", rpWriteScript, "2", "report:a", "other:x"),
		one("evalsha declared key outside", true, "EVALSHA", sha, "1", "other:x"),
		one("fcall declared key outside", true, "FCALL", "pwn", "1", "other:x"),
		one("migrate keys", true, "MIGRATE", "127.0.0.1", "1", "", "0", "1000", "KEYS", "report:a", "other:x"),
		// Listing the keyspace: only a pattern within report:* passes.
		one("keys *", true, "KEYS", "*"),
		one("keys other", true, "keys", "other:*"),
		one("keys report without the colon", true, "KEYS", "report*"),
		one("scan", true, "SCAN", "0"),
		one("scan count", true, "scan", "0", "COUNT", "100"),
		one("scan match other", true, "SCAN", "0", "MATCH", "other:*"),
		one("scan match leading star", true, "SCAN", "0", "MATCH", "*report:*"),
		one("scan last match wins", true, "SCAN", "0", "MATCH", "report:*", "MATCH", "*"),
		one("randomkey", true, "RANDOMKEY"),
		multi("multi: an allowed write, then a refused one", true,
			queuedOrRefused("SET", "report:a", "pwned"), refused("SET", "other:x", "pwned")),
		multi("multi: refused first, allowed after", true,
			refused("DEL", "other:x"), queuedOrRefused("INCR", "report:a")),
	}
}

// TestRedisPolicyBypassCorpus runs the corpus for a principal that may only
// read report:* keys and one that may only read and write them, through
// go-redis and raw RESP (and redis-cli): every case must be refused, and,
// read directly from Redis, nothing may have changed.
func TestRedisPolicyBypassCorpus(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: rpUsers, ExtraConf: map[string]string{"enable-debug-command": "yes"}})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, rpConfig(listen, up.Addr, "", rpReportsPolicy))
	ctx := testCtx(t, 3*time.Minute)
	direct := up.Client(t)
	sha, dump := rpSeed(t, ctx, direct)
	before := rpState(t, ctx, direct, sha)
	corpus := rpCorpus(sha, dump)
	if len(corpus) < 20 {
		t.Fatalf("corpus has %d cases", len(corpus))
	}
	bypasses := 0
	for _, user := range []string{"reader", "writer"} {
		t.Run(user, func(t *testing.T) {
			rdb := proxyClient(t, listen, 3, func(o *redis.Options) {
				o.Username, o.Password, o.MaxRetries, o.PoolSize = user, "x", -1, 1
			})
			ran := 0
			for _, c := range corpus {
				if user == "writer" && !c.both {
					continue
				}
				ran++
				t.Run(c.name, func(t *testing.T) {
					if len(c.steps) == 1 {
						// One command: go-redis.
						err := rdb.Do(ctx, anyArgs(c.steps[0].args)...).Err()
						if err == nil || !strings.HasPrefix(err.Error(), "NOPERM policy rule") {
							bypasses++
							t.Errorf("%v: err = %v, want NOPERM policy rule ...", c.steps[0].args, err)
						}
					} else {
						// A transaction: one raw connection, exact replies.
						rc := rpDial(t, listen)
						if got := rc.do("AUTH", user, "x"); got != "+OK" {
							t.Fatalf("AUTH = %s", got)
						}
						for _, st := range c.steps {
							got := rc.do(st.args...)
							ok := false
							for _, w := range st.want {
								ok = ok || strings.HasPrefix(got, w)
							}
							if !ok {
								bypasses++
								t.Errorf("%v = %q, want one of %q", st.args, got, st.want)
							}
						}
						// The connection is still usable after the
						// transaction was discarded.
						if got := rc.do("GET", "report:a"); got != "$1" {
							t.Errorf("GET report:a after the transaction = %q", got)
						}
					}
					if after := rpState(t, ctx, direct, sha); after != before {
						bypasses++
						t.Errorf("the upstream changed:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
			t.Logf("%s: %d cases", user, ran)
		})
	}

	t.Run("enumeration-within-the-rule", func(t *testing.T) {
		for _, user := range []string{"reader", "writer"} {
			rdb := proxyClient(t, listen, 3, func(o *redis.Options) { o.Username, o.Password = user, "x" })
			ks, _, err := rdb.Scan(ctx, 0, "report:*", 1000).Result()
			if err != nil || len(ks) == 0 {
				t.Errorf("%s: SCAN 0 MATCH report:* = %v, %v", user, ks, err)
			}
			for _, k := range ks {
				if !strings.HasPrefix(k, "report:") {
					t.Errorf("%s: SCAN MATCH report:* listed %q", user, k)
				}
			}
			if ks, err := rdb.Keys(ctx, "report:*").Result(); err != nil || len(ks) == 0 {
				t.Errorf("%s: KEYS report:* = %v, %v", user, ks, err)
			}
		}
	})

	t.Run("inline", func(t *testing.T) {
		for _, user := range []string{"reader", "writer"} {
			rc := rpDial(t, listen)
			if got := rc.inline("AUTH " + user + " x"); got != "+OK" {
				t.Fatalf("AUTH = %s", got)
			}
			for _, line := range []string{"set other:x pwned", "MSET report:a 1 other:x pwned", "rename report:b other:z"} {
				if got := rc.inline(line); !strings.HasPrefix(got, "-NOPERM") {
					bypasses++
					t.Errorf("%s: inline %q = %q", user, line, got)
				}
			}
		}
		if after := rpState(t, ctx, direct, sha); after != before {
			bypasses++
			t.Errorf("the upstream changed:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("redis-cli", func(t *testing.T) {
		cli, err := exec.LookPath("redis-cli")
		if err != nil {
			t.Skip("redis-cli not installed")
		}
		host, port := splitHostPort(t, listen)
		for _, args := range [][]string{{"SET", "report:a", "pwned"}, {"EVAL", rpWriteScript, "1", "report:a"}, {"mget", "report:a", "other:x"}} {
			out, _ := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port, "--user", "reader", "--pass", "x", "--no-auth-warning"}, args...)...).CombinedOutput()
			if !strings.Contains(string(out), "NOPERM policy rule \"readonly-reports\"") {
				bypasses++
				t.Errorf("redis-cli %v: %s", args, out)
			}
		}
		if after := rpState(t, ctx, direct, sha); after != before {
			bypasses++
			t.Errorf("the upstream changed:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Logf("bypasses: %d", bypasses)

	// The decision log names the rule and the command, never a key or a
	// value.
	logs := o.Logs.String()
	if !strings.Contains(logs, `"msg":"policy refused a request"`) || !strings.Contains(logs, `"rule":"readonly-reports"`) || !strings.Contains(logs, `"outcome":"deny"`) {
		t.Errorf("no decision log line for a refusal:\n%s", headLines(logs, 40))
	}
	for _, secret := range []string{"other:", "pwned", "secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if v := o.metric(`outrigger_policy_decisions_total{decision="deny",listener="rd",rule="readonly-reports"}`); v < float64(len(corpus)/2) {
		t.Errorf("deny decisions for readonly-reports = %v", v)
	}
}

func anyArgs(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestRedisPolicyAllowed shows the same rules letting through what they
// allow, in and out of MULTI, with a refusal in between not disturbing the
// session.
func TestRedisPolicyAllowed(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: rpUsers, ExtraConf: map[string]string{"enable-debug-command": "yes"}})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, rpConfig(listen, up.Addr, "", rpReportsPolicy))
	ctx := testCtx(t, time.Minute)
	direct := up.Client(t)
	rpSeed(t, ctx, direct)

	reader := proxyClient(t, listen, 3, func(o *redis.Options) { o.Username, o.Password, o.MaxRetries = "reader", "x", -1 })
	if v, err := reader.Get(ctx, "report:a").Result(); err != nil || v != "1" {
		t.Fatalf("reader GET report:a = %q, %v", v, err)
	}
	if v, err := reader.MGet(ctx, "report:a", "report:b").Result(); err != nil || len(v) != 2 || v[1] != "2" {
		t.Fatalf("reader MGET = %v, %v", v, err)
	}
	if v, err := reader.Do(ctx, "substr", "report:a", "0", "0").Text(); err != nil || v != "1" {
		t.Fatalf("reader SUBSTR = %q, %v", v, err)
	}
	if v, err := reader.Do(ctx, "SORT_RO", "report:l").StringSlice(); err != nil || strings.Join(v, ",") != "1,2,3" {
		t.Fatalf("reader SORT_RO = %v, %v", v, err)
	}
	if s, err := reader.XRead(ctx, &redis.XReadArgs{Streams: []string{"report:st", "0"}, Count: 1}).Result(); err != nil || len(s) != 1 {
		t.Fatalf("reader XREAD = %v, %v", s, err)
	}
	if err := reader.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	cmds, err := reader.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "report:a")
		p.Exists(ctx, "report:b")
		return nil
	})
	if err != nil || len(cmds) != 2 || cmds[0].(*redis.StringCmd).Val() != "1" {
		t.Fatalf("reader MULTI GET EXISTS EXEC = %v, %v", cmds, err)
	}

	// A pipeline with a refusal in the middle: every reply in order.
	pipe := reader.Pipeline()
	g1 := pipe.Get(ctx, "report:a")
	s := pipe.Set(ctx, "report:a", "pwned", 0)
	g2 := pipe.Get(ctx, "report:b")
	pipe.Exec(ctx)
	if g1.Val() != "1" || g2.Val() != "2" || s.Err() == nil || !strings.HasPrefix(s.Err().Error(), "NOPERM") {
		t.Fatalf("pipeline: GET %q, SET %v, GET %q", g1.Val(), s.Err(), g2.Val())
	}

	writer := proxyClient(t, listen, 2, func(o *redis.Options) { o.Username, o.Password, o.MaxRetries = "writer", "x", -1 })
	if err := writer.Set(ctx, "report:new", "w", 0).Err(); err != nil {
		t.Fatalf("writer SET report:new: %v", err)
	}
	if err := writer.MSet(ctx, "report:m1", "1", "report:m2", "2").Err(); err != nil {
		t.Fatalf("writer MSET: %v", err)
	}
	if err := writer.Eval(ctx, rpWriteScript, []string{"report:ev"}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("writer EVAL on a report key: %v", err)
	}
	if _, err := writer.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "report:n")
		p.Incr(ctx, "report:n")
		return nil
	}); err != nil {
		t.Fatalf("writer MULTI INCR INCR EXEC: %v", err)
	}
	for k, want := range map[string]string{"report:new": "w", "report:m2": "2", "report:ev": "pwned", "report:n": "2"} {
		if v, err := direct.Get(ctx, k).Result(); err != nil || v != want {
			t.Errorf("the real server has %s = %q, %v; want %q", k, v, err, want)
		}
	}

	// A user no rule names is under policy.default (allow).
	app := proxyClient(t, listen, 3, func(o *redis.Options) { o.Username, o.Password = "app", "x" })
	if err := app.Set(ctx, "other:app", "v", 0).Err(); err != nil {
		t.Fatalf("app SET: %v", err)
	}
	// AUTH changes the principal mid-session: the reader's rules apply
	// from the next command.
	rc := rpDial(t, listen)
	if got := rc.do("SET", "other:before", "v"); got != "+OK" {
		t.Fatalf("SET as default = %q", got)
	}
	rc.do("AUTH", "reader", "x")
	if got := rc.do("SET", "other:after", "v"); !strings.HasPrefix(got, "-NOPERM policy rule \"readonly-reports\"") {
		t.Fatalf("SET after AUTH reader = %q", got)
	}
	// RESET is checked like any command (@fast @connection): the reader's
	// rule does not list it.
	if got := rc.do("RESET"); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("RESET under the reader's rule = %q", got)
	}
	if got := rc.do("AUTH", "app", "x"); got != "+OK" {
		t.Fatalf("AUTH app = %q", got)
	}
	if got := rc.do("SET", "other:app2", "v"); got != "+OK" {
		t.Fatalf("SET after AUTH app = %q", got)
	}
	if got := rc.do("RESET"); got != "+RESET" {
		t.Fatalf("RESET = %q", got)
	}
	if got := rc.do("SET", "other:reset", "v"); got != "+OK" {
		t.Fatalf("SET after RESET = %q", got)
	}
}

// TestRedisPolicyMTLSPrincipal: a client identified by its certificate's
// SPIFFE ID gets its rule; on the same listener (client_auth: request) a
// client without a certificate, or with another identity, gets
// policy.default (deny).
func TestRedisPolicyMTLSPrincipal(t *testing.T) {
	integrationOnly(t)
	ca := testenv.NewCA(t, "mesh")
	leaf := ca.Issue(t, testenv.LeafOptions{Server: true, CommonName: "outrigger", DNSNames: []string{"localhost"}, IPs: []string{"127.0.0.1"}})
	files := testenv.WriteTLSFiles(t, ca, leaf)
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, rpConfig(listen, up.Addr,
		fmt.Sprintf("tls:\n  mesh: {cert: %s, key: %s, ca: %s, client_auth: request}\n", files.CertFile, files.KeyFile, files.CAFile),
		`policy:
  default: deny
  rules:
    - name: reporting
      when: {principal: "spiffe://example.org/ns/prod/sa/reporting"}
      redis: {categories: ["@read"], keys: ["report:*"]}
`))
	ctx := testCtx(t, time.Minute)
	direct := up.Client(t)
	direct.Set(ctx, "report:a", "1", 0)

	client := func(uri string) *redis.Client {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if uri != "" {
			c := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{uri}})
			cfg.Certificates = []tls.Certificate{c.TLSCertificate()}
		}
		return proxyClient(t, listen, 3, func(o *redis.Options) { o.TLSConfig, o.MaxRetries = cfg, -1 })
	}
	reporting := client("spiffe://example.org/ns/prod/sa/reporting")
	if v, err := reporting.Get(ctx, "report:a").Result(); err != nil || v != "1" {
		t.Fatalf("reporting GET report:a = %q, %v", v, err)
	}
	if err := reporting.Set(ctx, "report:a", "2", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), `NOPERM policy rule "reporting"`) {
		t.Fatalf("reporting SET = %v, want NOPERM policy rule \"reporting\"", err)
	}
	for name, c := range map[string]*redis.Client{"no certificate": client(""), "another identity": client("spiffe://example.org/ns/prod/sa/web")} {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("%s: PING: %v", name, err)
		}
		if err := c.Get(ctx, "report:a").Err(); err == nil || !strings.HasPrefix(err.Error(), `NOPERM policy rule "default"`) {
			t.Fatalf("%s: GET = %v, want NOPERM policy rule \"default\"", name, err)
		}
	}
	if v, _ := direct.Get(ctx, "report:a").Result(); v != "1" {
		t.Fatalf("report:a = %q", v)
	}
}

// TestRedisPolicyRateLimit floods a user limited to 100 commands/s (burst
// 10) for about ten seconds and counts what ran by a counter the commands
// increment, read from Redis itself: within 10% of 100*T+10 over the real
// window T. Modes: reject and delay (max_delay 50ms), flooded by 20 go-redis
// clients that go on after refusals; and delay with a max_delay long
// enough that nothing is refused, flooded by redis-benchmark -c 20 (which
// stops at the first error reply, so it cannot flood a limit that
// refuses). Another user, not limited, runs every command it sends during
// the flood.
func TestRedisPolicyRateLimit(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: rpUsers})
	direct := up.Client(t)
	for _, tc := range []struct {
		name, onLimit, maxDelay string
		benchmark               bool
	}{
		{"reject", "reject", "50ms", false},
		{"delay", "delay", "50ms", false},
		{"delay-redis-benchmark", "delay", "1s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bench := ""
			if tc.benchmark {
				var err error
				if bench, err = exec.LookPath("redis-benchmark"); err != nil {
					t.Skip("redis-benchmark not installed")
				}
			}
			listen := testenv.FreeAddr(t)
			o := startOutrigger(t, rpConfig(listen, up.Addr, "", fmt.Sprintf(`policy:
  default: allow
  rate_limits:
    - name: flood-limit
      when: {user: flood}
      rate: 100
      burst: 10
      per: user
      on_limit: %s
      max_delay: %s
`, tc.onLimit, tc.maxDelay)))
			ctx := testCtx(t, 2*time.Minute)
			counter, otherCounter := "flood:"+tc.name, "other:"+tc.name
			direct.Del(ctx, counter, counter+":again", otherCounter)

			// The unlimited user, during the flood.
			other := proxyClient(t, listen, 3, func(o *redis.Options) { o.Username, o.Password, o.MaxRetries = "other", "x", -1 })
			var otherOK, otherFailed atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := other.Incr(ctx, otherCounter).Err(); err != nil {
						otherFailed.Add(1)
					} else {
						otherOK.Add(1)
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			// A measure that fails ends the test before close(stop): the
			// other user stops before its client is closed.
			defer func() {
				select {
				case <-stop:
				default:
					close(stop)
				}
				wg.Wait()
			}()

			const window = 10 * time.Second
			var clientOK, clientLimited, clientOther atomic.Int64
			// measure floods for the window and returns how many INCRs ran
			// (read from Redis) and for how long.
			measure := func(counter string) (int64, float64) {
				var start, end time.Time
				clientOK.Store(0)
				clientLimited.Store(0)
				clientOther.Store(0)
				if tc.benchmark {
					host, port := splitHostPort(t, listen)
					cmd := exec.Command(bench, "-h", host, "-p", port, "--user", "flood", "-a", "x",
						"-c", "20", "-n", "100000000", "-q", "INCR", counter)
					var out testenv.SyncBuffer
					cmd.Stdout, cmd.Stderr = &out, &out
					start = time.Now()
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(window)
					if cmd.ProcessState == nil {
						cmd.Process.Signal(syscall.SIGKILL)
					}
					end = time.Now()
					cmd.Wait()
					if strings.Contains(out.String(), "Error") {
						t.Errorf("redis-benchmark saw an error (a refusal in delay mode within max_delay?):\n%s", headLines(out.String(), 10))
					}
				} else {
					flood := proxyClient(t, listen, 3, func(o *redis.Options) {
						o.Username, o.Password, o.MaxRetries, o.PoolSize = "flood", "x", -1, 20
					})
					var fwg sync.WaitGroup
					start = time.Now()
					deadline := start.Add(window)
					for range 20 {
						fwg.Add(1)
						go func() {
							defer fwg.Done()
							for time.Now().Before(deadline) {
								err := flood.Incr(ctx, counter).Err()
								switch {
								case err == nil:
									clientOK.Add(1)
								case strings.HasPrefix(err.Error(), "ERR rate limited flood-limit"):
									clientLimited.Add(1)
								default:
									clientOther.Add(1)
								}
							}
						}()
					}
					fwg.Wait()
					end = time.Now()
				}
				time.Sleep(300 * time.Millisecond) // commands delayed at the last instant land
				got, err := direct.Get(ctx, counter).Int64()
				if err != nil {
					t.Fatalf("reading %s: %v", counter, err)
				}
				return got, end.Sub(start).Seconds()
			}
			// More than the limit allows is a failure at once. Fewer means
			// the flood itself stalled (a machine busy with other work
			// starves it), not that the limit let less through: the
			// measurement is taken once more, from a drained bucket.
			limitedBefore := rpMetricSum(o, "outrigger_policy_decisions_total{", `decision="rate_limited"`)
			got, T := measure(counter)
			if want := 100*T + 10; float64(got) < 0.9*want {
				t.Logf("%s: %d INCRs ran in %.2fs, under %.0f - 10%%: the flood stalled; measuring again", tc.name, got, T, want)
				limitedBefore = rpMetricSum(o, "outrigger_policy_decisions_total{", `decision="rate_limited"`)
				got, T = measure(counter + ":again")
			}
			close(stop)
			wg.Wait()

			want := 100*T + 10
			t.Logf("%s: %d INCRs ran in %.2fs (clients saw %d ok, %d rate limited, %d other errors); expected %.0f ±10%%",
				tc.name, got, T, clientOK.Load(), clientLimited.Load(), clientOther.Load(), want)
			if float64(got) < 0.9*want || float64(got) > 1.1*want {
				t.Errorf("%d commands ran, want %.0f ±10%%", got, want)
			}
			if !tc.benchmark {
				if clientOther.Load() != 0 || clientOK.Load() != got {
					t.Errorf("the clients saw %d ok and %d unexpected errors; the counter is %d", clientOK.Load(), clientOther.Load(), got)
				}
				if clientLimited.Load() < got {
					t.Errorf("only %d commands were rate limited: the flood did not flood", clientLimited.Load())
				}
				// The metric also counts go-redis's connection setup
				// (CLIENT SETINFO, twice per connection) when it is
				// limited; go-redis ignores those errors.
				// go-redis may open more connections than its pool size under
				// load (and set each up again), so the bound is loose.
				limited := rpMetricSum(o, "outrigger_policy_decisions_total{", `decision="rate_limited"`) - limitedBefore
				if limited < float64(clientLimited.Load()) || limited > float64(clientLimited.Load())+4*40 {
					t.Errorf("rate_limited decisions = %v, the clients saw %d", limited, clientLimited.Load())
				}
				// The decision log is sampled: far fewer lines than refusals.
				if lines := strings.Count(o.Logs.String(), `"outcome":"rate_limited"`); lines == 0 || float64(lines) > 10*T+50 {
					t.Errorf("%d decision log lines for %d refusals in %.1fs", lines, clientLimited.Load(), T)
				}
			}
			if tc.onLimit == "delay" {
				if d := rpMetricSum(o, "outrigger_policy_decisions_total{", `decision="delayed"`); d == 0 {
					t.Error("no command was delayed in delay mode")
				}
			}
			n, err := direct.Get(ctx, otherCounter).Int64()
			t.Logf("the other user: %d commands ran, %d failed", otherOK.Load(), otherFailed.Load())
			if otherFailed.Load() != 0 || otherOK.Load() == 0 || err != nil || n != otherOK.Load() {
				t.Errorf("the other user: %d ok, %d failed, counter %d (%v)", otherOK.Load(), otherFailed.Load(), n, err)
			}
		})
	}
}

// rpMetricSum adds up the /metrics samples whose line starts with prefix
// and contains every one of has.
func rpMetricSum(o *outrigger, prefix string, has ...string) float64 {
	_, body := o.admin("/metrics")
	sum := 0.0
lines:
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, h := range has {
			if !strings.Contains(line, h) {
				continue lines
			}
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// TestRedisPolicyReload: an open session under a read-write rule; the
// config is rewritten to a read-only rule and reloaded (SIGHUP); the next
// command of the same connection is refused, and reads still work on it.
func TestRedisPolicyReload(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: rpUsers})
	listen := testenv.FreeAddr(t)
	policyFor := func(cats string) string {
		return fmt.Sprintf(`policy:
  default: deny
  rules:
    - name: app
      when: {user: app}
      redis: {categories: [%s], keys: ["app:*"]}
`, cats)
	}
	o := startOutrigger(t, rpConfig(listen, up.Addr, "", policyFor(`"@read", "@write"`)))
	ctx := testCtx(t, time.Minute)
	direct := up.Client(t)

	rc := rpDial(t, listen)
	if got := rc.do("AUTH", "app", "x"); got != "+OK" {
		t.Fatalf("AUTH = %q", got)
	}
	if got := rc.do("SET", "app:k", "1"); got != "+OK" {
		t.Fatalf("SET before the reload = %q", got)
	}
	o.rewrite(rpConfig(listen, up.Addr, "", policyFor(`"@read"`)))
	o.sigs <- sighup
	eventually(t, "the reload", func() bool { return o.metric(`outrigger_config_reloads_total{result="success"}`) == 2 })
	if got := rc.do("SET", "app:k", "2"); !strings.HasPrefix(got, `-NOPERM policy rule "app"`) {
		t.Fatalf("SET on the same connection after the reload = %q, want NOPERM", got)
	}
	if got := rc.do("GET", "app:k"); got != "$1" {
		t.Fatalf("GET after the reload = %q", got)
	}
	if v, _ := direct.Get(ctx, "app:k").Result(); v != "1" {
		t.Fatalf("app:k = %q after a refused SET", v)
	}
}
