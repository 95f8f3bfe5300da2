package redis

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestReplyReaderRealRedis frames what a real redis-server sends: a RESP2
// pipeline, then RESP3 after HELLO 3 (maps, sets, doubles, nulls, big
// numbers, verbatim strings, attributes from DEBUG PROTOCOL), and push
// frames from SUBSCRIBE and client tracking.
func TestReplyReaderRealRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs a real redis-server")
	}
	r := testenv.StartRedis(t, testenv.RedisOptions{ExtraConf: map[string]string{"enable-debug-command": "yes"}})
	conn := dial(t, r.Addr)
	rr := NewReplyReader(conn)
	big := strings.Repeat("x", 3<<20)

	expect := func(cmds [][]string, kinds string) []Reply {
		t.Helper()
		send(t, conn, cmds...)
		var got []Reply
		for i := range len(kinds) {
			rep, err := rr.Next()
			if err != nil {
				t.Fatalf("reply %d to %q: %v", i, cmds[min(i, len(cmds)-1)], err)
			}
			if rep.Kind != kinds[i] {
				t.Fatalf("reply %d to %q: kind %q (%.80q), want %q", i, cmds[min(i, len(cmds)-1)], rep.Kind, rep.Raw, kinds[i])
			}
			got = append(got, Reply{Raw: bytes.Clone(rep.Raw), Kind: rep.Kind, Push: rep.Push})
		}
		return got
	}

	// RESP2, pipelined.
	reps := expect([][]string{
		{"SET", "k", "v"}, {"GET", "k"}, {"GET", "missing"}, {"INCR", "n"},
		{"RPUSH", "l", "a", "b", "c"}, {"LRANGE", "l", "0", "-1"}, {"HSET", "h", "f", "1", "g", "2"},
		{"HGETALL", "h"}, {"NOSUCHCOMMAND"}, {"SET", "big", big}, {"GET", "big"},
		{"MULTI"}, {"INCR", "n"}, {"GET", "k"}, {"EXEC"}, {"BLPOP", "nolist", "0.01"},
		{"CLIENT", "INFO"}, {"COMMAND", "INFO", "GET", "XREAD"},
	}, "+$$::*:*-+$+++**$*")
	if len(reps[10].Raw) != len(big)+len("$3145728\r\n\r\n") {
		t.Fatalf("GET big: %d bytes", len(reps[10].Raw))
	}

	// RESP3.
	expect([][]string{
		{"HELLO", "3"}, {"HGETALL", "h"}, {"SMEMBERS", "s"}, {"SADD", "s", "m"}, {"SMEMBERS", "s"},
		{"ZADD", "z", "1.5", "m"}, {"ZSCORE", "z", "m"}, {"GET", "missing"},
		{"DEBUG", "PROTOCOL", "bignum"}, {"DEBUG", "PROTOCOL", "true"}, {"DEBUG", "PROTOCOL", "verbatim"},
		{"DEBUG", "PROTOCOL", "double"}, {"DEBUG", "PROTOCOL", "null"}, {"DEBUG", "PROTOCOL", "map"},
		{"DEBUG", "PROTOCOL", "set"},
	}, "%%~:~:,_(#=,_%~")
	// DEBUG PROTOCOL attrib sends an attribute and then the value.
	send(t, conn, []string{"DEBUG", "PROTOCOL", "attrib"})
	rep, err := rr.Next()
	if err != nil || rep.Raw[0] != '|' || rep.Kind != '$' || !bytes.HasSuffix(rep.Raw, []byte("following the attribute\r\n")) {
		t.Fatalf("attrib: %q kind %q, %v", rep.Raw, rep.Kind, err)
	}
	t.Logf("DEBUG PROTOCOL attrib: %q (kind %q)", rep.Raw, rep.Kind)

	// Push frames: client tracking invalidations, then pub/sub.
	other := dial(t, r.Addr)
	otherRR := NewReplyReader(other)
	expect([][]string{{"CLIENT", "TRACKING", "on"}, {"GET", "k"}}, "+$")
	send(t, other, []string{"SET", "k", "v2"})
	if rep, err := otherRR.Next(); err != nil || rep.Kind != '+' {
		t.Fatalf("SET on the other connection: %v", err)
	}
	if rep, err := rr.Next(); err != nil || !rep.Push || !bytes.Contains(rep.Raw, []byte("invalidate")) {
		t.Fatalf("invalidation: %q push=%v, %v", rep.Raw, rep.Push, err)
	}
	reps = expect([][]string{{"SUBSCRIBE", "ch"}}, ">")
	if !reps[0].Push {
		t.Fatal("SUBSCRIBE reply is not a push")
	}
	send(t, other, []string{"PUBLISH", "ch", "hello"})
	if rep, err := rr.Next(); err != nil || !rep.Push || !bytes.HasSuffix(rep.Raw, []byte("$5\r\nhello\r\n")) {
		t.Fatalf("message: %q push=%v, %v", rep.Raw, rep.Push, err)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// send writes commands as RESP arrays of bulk strings in one write.
func send(t *testing.T, c net.Conn, cmds ...[]string) {
	t.Helper()
	var b []byte
	for _, cmd := range cmds {
		b = append(b, '*')
		b = append(b, strconv.Itoa(len(cmd))...)
		b = append(b, "\r\n"...)
		for _, a := range cmd {
			b = append(b, '$')
			b = append(b, strconv.Itoa(len(a))...)
			b = append(b, "\r\n"...)
			b = append(b, a...)
			b = append(b, "\r\n"...)
		}
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}
