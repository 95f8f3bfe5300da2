package integration

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
	rediscmd "github.com/outrigger/outrigger/redis"
)

// labelMarker is put in everything a client controls: query text, bind
// values, application_name, Redis keys, values, client names and command
// names. It must never show up in /metrics.
const labelMarker = "Zq7LabelMarker"

// sourceIP is the address the clients connect from (the loopback range is
// all local), which must not show up either.
const sourceIP = "127.0.0.77"

// TestMetricLabelsCarryNoClientInput runs traffic through a postgres and a
// redis listener with a marker in all the client controls, then checks
// that /metrics holds neither the marker nor the client's address, and
// that every label value is one of a set bounded by the config or the code.
func TestMetricLabelsCarryNoClientInput(t *testing.T) {
	integrationOnly(t)
	pgUp := testenv.StartPostgres(t, testenv.PostgresOptions{})
	rdUp := testenv.StartRedis(t, testenv.RedisOptions{})
	pgAddr, rdAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
shutdown: {drain_timeout: 2s}
postgres:
  - name: appdb
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 4}
    auth:
      method: scram-sha-256
      users: [{name: app, password: app}]
redis:
  - name: cache
    listen: %q
    upstream: {address: %q}
`, pgAddr, pgUp.Addr(), rdAddr, rdUp.Addr))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}, Timeout: 5 * time.Second}

	// Postgres: the marker in application_name, literals, bind values,
	// identifiers, a SET, and a failed login's user name.
	host, port, _ := net.SplitHostPort(pgAddr)
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=app password=app dbname=app sslmode=disable application_name=%s", host, port, labelMarker))
	if err != nil {
		t.Fatal(err)
	}
	cc.DialFunc = dialer.DialContext
	pc, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, o.Logs)
	}
	defer pc.Close(context.Background())
	var s string
	if err := pc.QueryRow(ctx, "SELECT '"+labelMarker+"'::text").Scan(&s); err != nil || s != labelMarker {
		t.Fatalf("select: %q, %v", s, err)
	}
	if err := pc.QueryRow(ctx, "SELECT $1::text", labelMarker).Scan(&s); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT * FROM "+labelMarker+"_table"); err == nil {
		t.Fatal("a query of a missing table succeeded")
	}
	if _, err := pc.Exec(ctx, "SET application_name = '"+labelMarker+"2'"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT 1/0 AS "+labelMarker); err == nil {
		t.Fatal("division by zero succeeded")
	}
	bad, _ := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s password=x dbname=%s sslmode=disable", host, port, labelMarker, labelMarker))
	bad.DialFunc = dialer.DialContext
	if c, err := pgx.ConnectConfig(ctx, bad); err == nil {
		c.Close(ctx)
		t.Fatal("a login as an unknown user succeeded")
	}

	// Redis: the marker in keys, values, the client name and an unknown
	// command's name; an error reply of the server (WRONGTYPE).
	rc := redis.NewClient(&redis.Options{Addr: rdAddr, Protocol: 2, Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}})
	defer rc.Close()
	key := labelMarker + ":key"
	if err := rc.Set(ctx, key, labelMarker, 0).Err(); err != nil {
		t.Fatalf("SET: %v\n%s", err, o.Logs)
	}
	if err := rc.Do(ctx, "CLIENT", "SETNAME", labelMarker).Err(); err != nil {
		t.Fatalf("CLIENT SETNAME: %v", err)
	}
	if err := rc.LPush(ctx, key, labelMarker).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("LPUSH on a string: %v", err)
	}
	if err := rc.Do(ctx, labelMarker+"cmd", key).Err(); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	if err := rc.Do(ctx, "HSET", labelMarker+":h", labelMarker, labelMarker).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Get(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}

	_, body := o.admin("/metrics")
	if !strings.Contains(body, `outrigger_pg_query_results_total{error_class="none",listener="appdb"`) || !strings.Contains(body, `outrigger_redis_command_results_total{command="get",error_class="none",listener="cache"`) {
		t.Fatalf("the traffic was not counted:\n%s", grepLines(body, "query_results_total|command_results_total"))
	}
	if i := strings.Index(strings.ToLower(body), strings.ToLower(labelMarker)); i >= 0 {
		t.Errorf("/metrics holds client input: %q", body[max(0, i-200):min(len(body), i+100)])
	}
	if strings.Contains(body, sourceIP) {
		t.Errorf("/metrics holds the client's address %s", sourceIP)
	}

	// Every label value is in its bounded set.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	fixed := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	outcomes := append(metrics.Outcomes(), "commit", "rollback")
	classes := append(metrics.SQLStateClasses(), metrics.RedisErrorClasses()...)
	check := func(name, label, value string) bool {
		switch label {
		case "listener":
			return value == "appdb" || value == "cache"
		case "kind":
			return slices.Contains([]string{"tcp", "http", "postgres", "redis", "shared", "pinned"}, value)
		case "upstream":
			return value == pgUp.Addr() || value == rdUp.Addr
		case "pool":
			return value == "app/app"
		case "command":
			if value == "unknown" { // what the table does not know
				return true
			}
			parts := strings.Split(value, "|")
			args := make([][]byte, len(parts))
			for i, p := range parts {
				args[i] = []byte(p)
			}
			c := rediscmd.Lookup(args)
			return c != nil && c.Name == value
		case "outcome":
			return slices.Contains(outcomes, value)
		case "error_class":
			return slices.Contains(classes, value)
		case "version", "commit", "go_version", "hash":
			return !strings.ContainsAny(value, " '\"")
		default: // reason, result, state, class, decision, rule, code, route, profile, file
			return fixed.MatchString(value) || value == "/"
		}
	}
	n := 0
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				n++
				if !check(name, lp.GetName(), lp.GetValue()) {
					t.Errorf("%s: label %s=%q is outside its bounded set", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d label values checked; the scrape is too small", n)
	}
}

func grepLines(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
