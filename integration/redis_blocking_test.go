package integration

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestRedisClientLeavesDuringBlockingCommand: a client that disconnects
// while its BLPOP 0 waits frees its dedicated connection at once, so with
// pinned_size 1 the next client's blocking command is served.
func TestRedisClientLeavesDuringBlockingCommand(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, redisProxyConfigPinned(listen, up.Addr, 2, 1, 3*time.Second))

	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("*3\r\n$5\r\nBLPOP\r\n$8\r\nblock:q0\r\n$1\r\n0\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let it take the only dedicated connection
	c.Close()

	ctx := testCtx(t, 30*time.Second)
	other := proxyClient(t, listen, 2, func(o *redis.Options) { o.PoolSize = 1; o.MaxRetries = -1 })
	start := time.Now()
	err = other.BLPop(ctx, 500*time.Millisecond, "block:q1").Err()
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("second client's BLPOP after the first left: %v after %v (the dedicated connection was not freed)", err, time.Since(start))
	}
	// And a client that pipelines after its blocking command gets every reply.
	if err := other.RPush(ctx, "block:q2", "x").Err(); err != nil {
		t.Fatal(err)
	}
	cmds, err := other.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.BLPop(ctx, time.Second, "block:q2")
		p.Ping(ctx)
		return nil
	})
	if err != nil || len(cmds) != 2 || cmds[1].(*redis.StatusCmd).Val() != "PONG" {
		t.Fatalf("pipeline after a blocking command: %v %v", cmds, err)
	}
	// One pinned connection (the first client's was closed, this one's is
	// idle in the pool) and at least one shared one.
	eventually(t, "the upstream connection gauges", func() bool {
		return o.metric(`outrigger_redis_upstream_connections{kind="pinned",listener="`+redisListener+`"}`) == 1 &&
			o.metric(`outrigger_redis_upstream_connections{kind="shared",listener="`+redisListener+`"}`) >= 1
	})
}
