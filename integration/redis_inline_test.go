package integration

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// Inline commands (telnet style) are split as Redis splits them, quotes
// and escapes included; unbalanced quotes get Redis's protocol error and a
// close. Redis itself is the reference: every exchange is run against it
// and through Outrigger, and the replies must be the same.
func TestRedisInlineQuoting(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	exchange := func(addr string, lines []string) string {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		var out strings.Builder
		for _, l := range lines {
			if _, err := io.WriteString(c, l+"\r\n"); err != nil {
				out.WriteString("write error\n")
				break
			}
			reply, err := r.ReadString('\n')
			if err != nil {
				out.WriteString("closed\n")
				break
			}
			out.WriteString(reply)
			if strings.HasPrefix(reply, "$") && !strings.HasPrefix(reply, "$-") {
				body, _ := r.ReadString('\n')
				out.WriteString(body)
			}
		}
		return out.String()
	}
	for _, lines := range [][]string{
		{`SET inline:k "a b"`, `GET inline:k`, `SET inline:k 'it\'s'`, `GET inline:k`,
			`SET inline:k "x\x41\ty"`, `GET inline:k`, `EXISTS "inline:k" 'inline:k'`},
		{`SET inline:k "unbalanced`, `PING`},
		{`GET "inline:k"x`, `PING`},
	} {
		direct := exchange(p.up.Addr, lines)
		proxied := exchange(p.addr, lines)
		if direct != proxied {
			t.Errorf("%q:\nRedis:\n%s\nOutrigger:\n%s", lines, direct, proxied)
		}
	}
}
