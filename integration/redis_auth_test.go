package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestRedisOwnUsers: the listener's own users map to upstream ACL users, so
// the application holds no Redis secret; with auth.required, nothing but
// AUTH, HELLO, PING and QUIT works before authenticating.
func TestRedisOwnUsers(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{
		RequirePass: "upstream-default-secret",
		ACLUsers: []testenv.RedisACLUser{
			{Name: "app", Password: "upstream-app-secret", Rules: "on ~* +@all"},
			{Name: "reader", Password: "upstream-reader-secret", Rules: "on ~* +@read +@connection"},
		},
	})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
redis:
  - name: rd
    listen: %s
    upstream: {address: %s}
    pool: {size: 2}
    auth:
      required: true
      users:
        - {name: svc, password: svc-pw, upstream_user: app, upstream_password: upstream-app-secret}
        - {name: report, password: report-pw, upstream_user: reader, upstream_password: upstream-reader-secret}
`, listen, up.Addr))
	ctx := testCtx(t, 30*time.Second)

	anon := proxyClient(t, listen, 2, func(o *redis.Options) { o.MaxRetries = -1 })
	// go-redis opens with HELLO; like Redis with requirepass, Outrigger
	// answers NOAUTH before the client has authenticated.
	if err := anon.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("GET before AUTH: %v, want NOAUTH", err)
	}
	for _, proto := range []int{2, 3} {
		svc := proxyClient(t, listen, proto, func(o *redis.Options) { o.Username, o.Password = "svc", "svc-pw" })
		if err := svc.Set(ctx, "own:k", "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d SET as svc (upstream app): %v", proto, err)
		}
		report := proxyClient(t, listen, proto, func(o *redis.Options) { o.Username, o.Password = "report", "report-pw" })
		if got, err := report.Get(ctx, "own:k").Result(); err != nil || got != "v" {
			t.Fatalf("RESP%d GET as report: %q %v", proto, got, err)
		}
		if err := report.Set(ctx, "own:k", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("RESP%d SET as report (upstream reader): %v, want NOPERM from Redis", proto, err)
		}
		bad := proxyClient(t, listen, proto, func(o *redis.Options) {
			o.Username, o.Password, o.MaxRetries = "svc", "upstream-app-secret", -1
		})
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("RESP%d: the upstream's own password works on the proxy: %v", proto, err)
		}
	}
	if _, body := o.admin("/config"); strings.Contains(body, "svc-pw") || strings.Contains(body, "upstream-app-secret") {
		t.Errorf("/config shows a secret:\n%s", body)
	}
}
