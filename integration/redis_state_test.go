package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/redis"
)

var helloIDRE = regexp.MustCompile(`(\$2\r\nid\r\n|\+id\r\n):\d+`)

// maskClientID hides the client id in a HELLO reply: Outrigger's own.
func maskClientID(s string) string { return helloIDRE.ReplaceAllString(s, "${1}:ID") }

// respConversation sends cmds on a fresh connection to addr, one at a
// time, and returns every reply's raw bytes, in order. Each reply is read
// whole with Outrigger's own reply framer.
func respConversation(t *testing.T, addr string, cmds [][]string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	rr := redis.NewReplyReader(bufio.NewReader(c))
	var out []string
	for _, cmd := range cmds {
		var b []byte
		b = fmt.Appendf(b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		rep, err := rr.Next()
		if err == io.EOF {
			out = append(out, "(closed)")
			break
		}
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		out = append(out, string(rep.Raw))
	}
	return out
}

// TestRedisConnectionStateSameAsDirect: conversations that change a
// connection's state (AUTH to another user, HELLO with AUTH, SELECT, RESET,
// the unsubscribe family) get byte for byte the replies Redis gives direct,
// in RESP2 and RESP3, and the replies after them stay in step.
func TestRedisConnectionStateSameAsDirect(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 4)
	setup := p.up.Client(t)
	ctx := testCtx(t, time.Minute)
	for _, rule := range [][]any{
		{"acl", "setuser", "bob", "on", ">123", "+@all", "~*", "&*"},
		{"acl", "setuser", "carol", "on", ">pw", "+@all", "-select", "~*", "&*"},
	} {
		if err := setup.Do(ctx, rule...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	convs := map[string][][]string{
		"auth-switch":                  {{"SET", "st:k", "test"}, {"AUTH", "bob", "123"}, {"GET", "st:k"}, {"ACL", "WHOAMI"}, {"PING"}},
		"auth-switch-resp3":            {{"HELLO", "3"}, {"AUTH", "bob", "123"}, {"GET", "st:k"}, {"ACL", "WHOAMI"}, {"PING"}},
		"hello-auth":                   {{"HELLO", "3", "AUTH", "bob", "123"}, {"ACL", "WHOAMI"}, {"HELLO", "2", "AUTH", "default", ""}, {"PING"}},
		"auth-wrong":                   {{"AUTH", "bob", "nope"}, {"ACL", "WHOAMI"}, {"PING"}},
		"auth-user-without-select":     {{"SELECT", "2"}, {"SET", "st:db2c", "x"}, {"AUTH", "carol", "pw"}, {"GET", "st:db2c"}, {"ACL", "WHOAMI"}, {"SELECT", "2"}, {"SELECT", "0"}, {"GET", "st:db2c"}},
		"hello-auth-without-select":    {{"SELECT", "4"}, {"SET", "st:db4c", "z"}, {"HELLO", "3", "AUTH", "carol", "pw"}, {"GET", "st:db4c"}, {"ACL", "WHOAMI"}, {"SELECT", "4"}, {"PING"}},
		"auth-user-with-select":        {{"SELECT", "2"}, {"SET", "st:db2", "x"}, {"AUTH", "bob", "123"}, {"GET", "st:db2"}, {"ACL", "WHOAMI"}},
		"select-then-reset":            {{"SELECT", "3"}, {"SET", "st:db3", "y"}, {"RESET"}, {"GET", "st:db3"}, {"ACL", "WHOAMI"}},
		"unsubscribe-not-subscribed":   {{"UNSUBSCRIBE"}, {"PUNSUBSCRIBE"}, {"SUNSUBSCRIBE"}, {"PUBLISH", "ch", "m"}, {"PING"}},
		"unsubscribe-resp3":            {{"HELLO", "3"}, {"UNSUBSCRIBE", "a", "b"}, {"PUNSUBSCRIBE"}, {"PING"}},
		"punsubscribe-then-psubscribe": {{"PUNSUBSCRIBE"}, {"PUBLISH", "ch", "m"}, {"PSUBSCRIBE", "st:*"}, {"PING"}},
		// Redis's own unit/scripting cases of these names.
		"script-recursive-table":       {{"EVAL", "local a = {}; local b = {a}; a[1] = b; return a", "0"}, {"PING"}},
		"script-recursive-table-resp3": {{"HELLO", "3"}, {"EVAL", "local a = {}; local b = {a}; a[1] = b; return a", "0"}, {"PING"}},
		"script-unpack-many":           {{"DEL", "st:l"}, {"EVAL", "local a = {}; for i=1,7999 do a[i] = 1 end; return redis.call('lpush', KEYS[1], unpack(a))", "1", "st:l"}, {"EVAL", "return {unpack(ARGV)}", "0", "a", "b", "c"}, {"DEL", "st:l"}},
		"script-read-key-with-expiry":  {{"SET", "st:ex", "value", "EX", "10"}, {"EVAL", "if redis.call('EXISTS', KEYS[1]) then return redis.call('GET', KEYS[1]) else return redis.call('EXISTS', KEYS[1]) end", "1", "st:ex"}, {"PING"}},
		"script-del-key-with-expiry":   {{"SET", "st:ex", "value", "EX", "10"}, {"EVAL", "redis.call('DEL', KEYS[1]); return redis.call('EXISTS', KEYS[1])", "1", "st:ex"}, {"PING"}},
	}
	for name, conv := range convs {
		t.Run(name, func(t *testing.T) {
			want := respConversation(t, p.up.Addr, conv)
			got := respConversation(t, p.addr, conv)
			for i := range max(len(want), len(got)) {
				w, g := "(none)", "(none)"
				if i < len(want) {
					w = want[i]
				}
				if i < len(got) {
					g = got[i]
				}
				if maskClientID(w) != maskClientID(g) {
					t.Errorf("%v: direct %q, through Outrigger %q", conv[min(i, len(conv)-1)], w, g)
				}
			}
		})
	}
}
