package integration

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestRedisHelloID: HELLO's id is the client's own (what CLIENT ID says),
// not the id of the shared upstream connection, in RESP3 and RESP2.
func TestRedisHelloID(t *testing.T) {
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 20*time.Second)
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto, func(o *redis.Options) { o.PoolSize = 1 })
		conn := c.Conn()
		id, err := conn.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		v, err := conn.Do(ctx, "HELLO", proto).Result()
		if err != nil {
			t.Fatal(err)
		}
		var got any
		switch m := v.(type) {
		case map[any]any:
			got = m["id"]
		case []any:
			for i := 0; i+1 < len(m); i += 2 {
				if m[i] == "id" {
					got = m[i+1]
				}
			}
		}
		if got != id {
			t.Errorf("RESP%d: HELLO id = %v (%T), CLIENT ID = %d", proto, got, got, id)
		}
		conn.Close()
	}
}

// TestRedisSelectInsideMulti: SELECT queued in MULTI moves the client only
// if EXEC runs the transaction; DISCARD leaves it where it was.
func TestRedisSelectInsideMulti(t *testing.T) {
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 20*time.Second)
	c := p.client(t, 2, func(o *redis.Options) { o.PoolSize = 1 })
	conn := c.Conn()
	defer conn.Close()
	do := func(args ...any) any {
		t.Helper()
		v, err := conn.Do(ctx, args...).Result()
		if err != nil && err != redis.Nil {
			t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	do("SELECT", 0)
	do("SET", "where", "db0")
	do("SELECT", 1)
	do("SET", "where", "db1")
	do("SELECT", 0)

	do("MULTI")
	do("SELECT", 1)
	do("DISCARD")
	if got := do("GET", "where"); got != "db0" {
		t.Fatalf("after a discarded MULTI with SELECT 1: GET where = %v, want db0", got)
	}
	do("MULTI")
	do("SELECT", 1)
	do("EXEC")
	if got := do("GET", "where"); got != "db1" {
		t.Fatalf("after EXEC of SELECT 1: GET where = %v, want db1", got)
	}
	// Under WATCH alone SELECT runs at once.
	do("WATCH", "k")
	do("SELECT", 0)
	do("UNWATCH")
	if got := do("GET", "where"); got != "db0" {
		t.Fatalf("after SELECT 0 under WATCH: GET where = %v, want db0", got)
	}
}
