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
