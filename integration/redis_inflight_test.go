package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// outrigger_redis_in_flight_commands shows the commands waiting on the
// shared connections while Redis does not answer, and none after.
func TestRedisInFlightGauge(t *testing.T) {
	integrationOnly(t)
	p := startRedisProxy(t, testenv.RedisOptions{}, 2)
	ctx := testCtx(t, 30*time.Second)
	series := fmt.Sprintf(`outrigger_redis_in_flight_commands{listener="%s"}`, redisListener)
	warm := p.client(t, 2)
	if err := warm.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if v := p.o.metric(series); v != 0 {
		t.Fatalf("%s = %v with nothing in flight", series, v)
	}
	clients := make([]interface {
		Get(ctx context.Context, key string) *redis.StringCmd
	}, 5)
	for i := range clients {
		c := p.client(t, 2)
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	// Redis holds every client's commands for a second.
	if err := p.up.Client(t).Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait() // eventually may fail the test: the GETs call t.Errorf
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Get(ctx, fmt.Sprintf("inflight:%d", i)).Err(); err != nil && err.Error() != "redis: nil" {
				t.Errorf("GET: %v", err)
			}
		}()
	}
	var seen float64
	eventually(t, "five commands in flight", func() bool { seen = max(seen, p.o.metric(series)); return seen == 5 })
	wg.Wait()
	if v := p.o.metric(series); v != 0 {
		t.Errorf("%s = %v after every reply", series, v)
	}
}
