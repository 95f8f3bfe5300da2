package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// busyScript runs for ARGV[1] seconds of Redis's clock, then sets KEYS[1]
// and returns 'done'.
const busyScript = `local t = redis.call('TIME')
while true do
  local n = redis.call('TIME')
  if (n[1] - t[1]) >= tonumber(ARGV[1]) then break end
end
redis.call('SET', KEYS[1], 'done')
return 'done'`

// TestRedisBusyIsNotDead: pool.command_timeout tells a stopped upstream
// from a busy one with a probe on another connection. A script that runs
// three times the timeout completes and its client gets the result (and
// its write is there); a SIGSTOPped Redis gives its clients an error that
// says the command's fate is unknown, within the timeout and the probe's,
// and Outrigger serves again once Redis runs again.
func TestRedisBusyIsNotDead(t *testing.T) {
	integrationOnly(t)
	const timeout = 2 * time.Second
	// Redis serves other connections during a script (with -BUSY) only
	// once busy-reply-threshold has passed: keep it under the timeout, as
	// the defaults (5s both) do.
	up := testenv.StartRedis(t, testenv.RedisOptions{ExtraConf: map[string]string{"busy-reply-threshold": "1000"}})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, redisProxyConfig(listen, up.Addr, 2, timeout))
	p := &redisProxy{up: up, addr: listen}
	c := p.client(t, 2)
	ctx := testCtx(t, time.Minute)

	t.Run("script-3x-timeout", func(t *testing.T) {
		secs := int(3 * timeout / time.Second)
		start := time.Now()
		got, err := c.Eval(ctx, busyScript, []string{"busy:k"}, secs).Result()
		if err != nil || got != "done" {
			t.Fatalf("EVAL of a %ds script under a %s command_timeout = %v, %v; want done", secs, timeout, got, err)
		}
		// (Redis's TIME counts whole seconds: the script runs secs-1 to
		// secs seconds.)
		if took := time.Since(start); took < 2*timeout {
			t.Fatalf("the script answered after %s: it did not outlast the timeout, the test proves nothing", took)
		}
		if v, err := up.Client(t).Get(ctx, "busy:k").Result(); err != nil || v != "done" {
			t.Fatalf("the script's write: %q, %v", v, err)
		}
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after the script: %v", err)
		}
	})

	t.Run("client-pause-write", func(t *testing.T) {
		// Writes queued behind a CLIENT PAUSE longer than two timeouts run
		// when it ends, and their clients get Redis's replies.
		if err := up.Client(t).Do(ctx, "CLIENT", "PAUSE", "5000", "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Set(ctx, "busy:paused", "x", 0).Err(); err != nil {
			t.Fatalf("SET during CLIENT PAUSE WRITE 5000: %v", err)
		}
		if took := time.Since(start); took < 2*timeout {
			t.Fatalf("SET answered after %s, before the pause could have ended", took)
		}
	})

	t.Run("sigstop", func(t *testing.T) {
		pid := up.PID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		defer resume()
		start := time.Now()
		err := c.Set(ctx, "busy:stopped", "x", 0).Err()
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "may or may not have run") {
			t.Fatalf("SET to a stopped Redis: %v; want an error saying its fate is unknown", err)
		}
		// A bound against hanging, not a speed target: the reply clock
		// and the probe take two timeouts; the rest is slack.
		if took > 4*timeout {
			t.Fatalf("the error took %s (command_timeout %s)", took, timeout)
		}
		t.Logf("error after %s: %v", took, err)
		resume()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := c.Ping(ctx).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PING after SIGCONT: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
