package integration

import (
	"errors"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// parseClientLines splits CLIENT LIST text into its lines' fields.
func parseClientLines(t *testing.T, text string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(line, " ") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("CLIENT LIST field %q of line %q is not key=value", kv, line)
			}
			f[k] = v
		}
		out = append(out, f)
	}
	return out
}

// upstreamConns is how many connections the server itself lists.
func upstreamConns(t *testing.T, up *redis.Client) int {
	t.Helper()
	text, err := up.ClientList(testCtx(t, 10*time.Second)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(parseClientLines(t, text))
}

// TestRedisClientIDs: the ids CLIENT ID gives are the only ones a client
// sees, and CLIENT UNBLOCK, CLIENT KILL, CLIENT LIST and CLIENT INFO act on
// and describe Outrigger's clients (go-redis in RESP2 and RESP3, and
// redis-cli), never the shared upstream connections; CLIENT NO-EVICT
// follows its client instead of changing a shared connection.
func TestRedisClientIDs(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 2*time.Minute)
	direct := p.up.Client(t)

	for _, proto := range []int{2, 3} {
		t.Run("unblock/resp"+strconv.Itoa(proto), func(t *testing.T) {
			blocked := p.client(t, proto)
			other := p.client(t, proto)
			id, err := blocked.ClientID(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			// Not blocked yet: 0, as Redis answers.
			if n, err := other.ClientUnblock(ctx, id).Result(); err != nil || n != 0 {
				t.Fatalf("CLIENT UNBLOCK of an idle client = %d, %v; want 0", n, err)
			}
			for _, mode := range []string{"TIMEOUT", "ERROR"} {
				res := make(chan error, 1)
				go func() { res <- blocked.BLPop(ctx, 0, "cl:never").Err() }()
				var n int64
				eventually(t, "CLIENT UNBLOCK "+mode+" answering 1", func() bool {
					n, err = other.Do(ctx, "CLIENT", "UNBLOCK", id, mode).Int64()
					return err == nil && n == 1
				})
				select {
				case err := <-res:
					switch {
					case mode == "TIMEOUT" && !errors.Is(err, redis.Nil):
						t.Fatalf("BLPOP unblocked with TIMEOUT: %v, want a nil reply", err)
					case mode == "ERROR" && (err == nil || !strings.HasPrefix(err.Error(), "UNBLOCKED")):
						t.Fatalf("BLPOP unblocked with ERROR: %v, want -UNBLOCKED", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("BLPOP still blocked after CLIENT UNBLOCK %s answered 1", mode)
				}
			}
			if n, err := other.ClientUnblock(ctx, 1<<40).Result(); err != nil || n != 0 {
				t.Fatalf("CLIENT UNBLOCK of an unknown id = %d, %v; want 0", n, err)
			}
			if err := other.Do(ctx, "CLIENT", "UNBLOCK", id, "SOMETIMES").Err(); err == nil || !strings.Contains(err.Error(), "TIMEOUT or ERROR") {
				t.Fatalf("CLIENT UNBLOCK with a bad reason: %v, want Redis's error", err)
			}
		})
	}

	t.Run("kill", func(t *testing.T) {
		killer := p.client(t, 2)
		before := upstreamConns(t, direct)
		victims := make([]*rpConn, 3)
		ids := make([]int64, 3)
		for i := range victims {
			victims[i] = rpDial(t, p.addr)
			got := victims[i].do("CLIENT", "ID")
			ids[i], _ = strconv.ParseInt(strings.TrimPrefix(got, ":"), 10, 64)
			if ids[i] == 0 {
				t.Fatalf("CLIENT ID = %s", got)
			}
		}
		closed := func(rc *rpConn) bool {
			_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := rc.r.ReadByte()
			return errors.Is(err, io.EOF)
		}
		if n, err := killer.ClientKillByFilter(ctx, "ID", strconv.FormatInt(ids[0], 10)).Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL ID = %d, %v; want 1", n, err)
		}
		if !closed(victims[0]) {
			t.Fatal("the client killed by id is still connected")
		}
		addr := victims[1].c.LocalAddr().String()
		if n, err := killer.ClientKillByFilter(ctx, "ADDR", addr, "SKIPME", "yes").Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL ADDR = %d, %v; want 1", n, err)
		}
		if !closed(victims[1]) {
			t.Fatal("the client killed by address is still connected")
		}
		if err := killer.ClientKill(ctx, victims[2].c.LocalAddr().String()).Err(); err != nil {
			t.Fatalf("CLIENT KILL ip:port: %v", err)
		}
		if !closed(victims[2]) {
			t.Fatal("the client killed by the old form is still connected")
		}
		if err := killer.ClientKill(ctx, "127.0.0.1:1").Err(); err == nil || err.Error() != "ERR No such client" {
			t.Fatalf("CLIENT KILL of no client: %v", err)
		}
		self, _ := killer.ClientID(ctx).Result()
		if n, err := killer.ClientKillByFilter(ctx, "ID", strconv.FormatInt(self, 10)).Result(); err != nil || n != 0 {
			t.Fatalf("CLIENT KILL ID of itself (SKIPME yes by default) = %d, %v; want 0", n, err)
		}
		if err := killer.ClientKillByFilter(ctx, "USER", "nobody-such").Err(); err == nil || !strings.Contains(err.Error(), "No such user") {
			t.Fatalf("CLIENT KILL USER of an unknown user: %v, want Redis's error", err)
		}
		if err := killer.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after the kills: %v", err)
		}
		if after := upstreamConns(t, direct); after < before {
			t.Fatalf("the server lists %d connections after the kills, %d before: a shared one was closed", after, before)
		}
	})

	t.Run("kill-acl", func(t *testing.T) {
		if err := direct.Do(ctx, "ACL", "SETUSER", "nokill", "on", ">pw", "+@all", "-client|kill", "-client|list", "~*").Err(); err != nil {
			t.Fatal(err)
		}
		c := p.client(t, 2, func(o *redis.Options) { o.Username, o.Password = "nokill", "pw" })
		for _, cmd := range [][]any{{"CLIENT", "KILL", "ID", "1"}, {"CLIENT", "LIST"}} {
			if err := c.Do(ctx, cmd...).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
				t.Errorf("%v by a user Redis denies it: %v, want Redis's NOPERM", cmd, err)
			}
		}
	})

	for _, proto := range []int{2, 3} {
		t.Run("list-and-info/resp"+strconv.Itoa(proto), func(t *testing.T) {
			a := p.client(t, proto)
			b := p.client(t, proto)
			if err := b.Do(ctx, "CLIENT", "SETNAME", "worker-b").Err(); err != nil {
				t.Fatal(err)
			}
			if err := b.Do(ctx, "SELECT", "3").Err(); err != nil {
				t.Fatal(err)
			}
			idB, _ := b.ClientID(ctx).Result()
			info, err := b.ClientInfo(ctx).Result() // go-redis parses it
			if err != nil {
				t.Fatalf("CLIENT INFO: %v", err)
			}
			if info.ID != idB || info.Name != "worker-b" || info.DB != 3 || info.LastCmd != "client|info" || info.Resp != proto || info.User != "default" {
				t.Fatalf("CLIENT INFO = %+v", info)
			}
			text, err := a.ClientList(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			lines := parseClientLines(t, text)
			var found bool
			for _, f := range lines {
				for _, k := range []string{"id", "addr", "laddr", "name", "age", "idle", "flags", "db", "cmd", "user", "resp"} {
					if _, ok := f[k]; !ok {
						t.Fatalf("CLIENT LIST line %v lacks %s", f, k)
					}
				}
				if f["id"] == strconv.FormatInt(idB, 10) {
					found = true
					if f["name"] != "worker-b" || f["db"] != "3" || f["cmd"] != "client|info" || f["lib-name"] != info.LibName {
						t.Errorf("b's line = %v", f)
					}
				}
			}
			if !found {
				t.Fatalf("CLIENT LIST has no line with b's id %d:\n%s", idB, text)
			}
			one, err := a.Do(ctx, "CLIENT", "LIST", "ID", idB).Text()
			if err != nil || len(parseClientLines(t, one)) != 1 {
				t.Fatalf("CLIENT LIST ID %d = %q, %v", idB, one, err)
			}
		})
	}

	t.Run("redis-cli", func(t *testing.T) {
		bin, err := exec.LookPath("redis-cli")
		if err != nil {
			t.Skip("redis-cli not installed")
		}
		_, port, _ := strings.Cut(p.addr, ":")
		out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "CLIENT", "LIST").CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli CLIENT LIST: %v: %s", err, out)
		}
		lines := parseClientLines(t, string(out))
		if len(lines) == 0 || lines[len(lines)-1]["cmd"] != "client|list" {
			t.Fatalf("redis-cli CLIENT LIST:\n%s", out)
		}
	})

	t.Run("no-evict-follows-the-client", func(t *testing.T) {
		c := p.client(t, 2)
		if err := c.Do(ctx, "CLIENT", "NO-EVICT", "on").Err(); err != nil {
			t.Fatal(err)
		}
		info, err := c.ClientInfo(ctx).Result()
		if err != nil || info.Flags&redis.ClientNoEvict == 0 {
			t.Fatalf("CLIENT INFO after NO-EVICT on = %+v, %v", info, err)
		}
		if err := c.Set(ctx, "cl:ne", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		text, err := direct.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		var flagged, plain int
		for _, f := range parseClientLines(t, text) {
			if f["cmd"] == "client|list" {
				continue // this test's own direct connection
			}
			if strings.Contains(f["flags"], "e") {
				flagged++
			} else {
				plain++
			}
		}
		if flagged == 0 || plain == 0 {
			t.Fatalf("upstream connections: %d with no-evict, %d without; want the client's own and the shared ones apart:\n%s", flagged, plain, text)
		}
		if err := c.Do(ctx, "CLIENT", "NO-EVICT", "maybe").Err(); err == nil || err.Error() != "ERR syntax error" {
			t.Fatalf("CLIENT NO-EVICT maybe: %v", err)
		}
	})
}
