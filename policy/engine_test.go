package policy

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
)

// load compiles the policy of a YAML config (the policy: section and
// nothing else is needed), through config.Load as the sidecar does.
func load(t testing.TB, yaml string, opts ...Option) *Engine {
	t.Helper()
	cfg, err := config.Load(config.Source{Data: []byte(yaml), Environ: []string{}})
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	eng, err := Compile(cfg.Policy, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return eng
}

var bg = context.Background()

func sql(t testing.TB, s *Session, q string) Decision {
	t.Helper()
	return s.CheckPostgres(bg, classify.Classify(q))
}

func TestFirstMatchingRuleGoverns(t *testing.T) {
	eng := load(t, `
policy:
  default: deny
  rules:
    - name: reporting-prod
      when: {principal: "spiffe://example.org/ns/prod/sa/reporting", source: 10.0.0.0/8}
      postgres: {statements: [select]}
    - name: reporting
      when: {principal: "spiffe://example.org/ns/*/sa/reporting"}
      postgres: {statements: [select, insert]}
    - name: app
      when: {user: app, database: "app*"}
      postgres: {}
    - name: local
      when: {listener: local-*, source: "127.0.0.*"}
      redis: {}
`)
	tests := []struct {
		name string
		p    Principal
		want string
	}{
		{"first rule", Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting", Source: netip.MustParseAddr("10.1.1.1")}, "reporting-prod"},
		{"first rule fails on source", Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting", Source: netip.MustParseAddr("192.168.1.1")}, "reporting"},
		{"first rule fails without source", Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting"}, "reporting"},
		{"second rule glob", Principal{Identity: "spiffe://example.org/ns/staging/sa/reporting"}, "reporting"},
		{"glob does not cross /", Principal{Identity: "spiffe://example.org/ns/a/b/sa/reporting"}, "default"},
		{"user and database", Principal{User: "app", Database: "app_main"}, "app"},
		{"user without database", Principal{User: "app"}, "default"},
		{"same user with a certificate the rules do not name", Principal{Identity: "spiffe://other/x", User: "app", Database: "app"}, "app"},
		{"listener and source glob", Principal{Listener: "local-cache", Source: netip.MustParseAddr("127.0.0.1")}, "local"},
		{"IPv4-mapped source", Principal{Listener: "local-cache", Source: netip.MustParseAddr("::ffff:127.0.0.1")}, "local"},
		{"nothing matches", Principal{User: "someone"}, "default"},
		{"empty principal", Principal{}, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eng.Session(tt.p).RuleName(); got != tt.want {
				t.Errorf("rule = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatchFields(t *testing.T) {
	v4 := netip.MustParseAddr("10.20.30.40")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		when config.Match
		p    Principal
		want bool
	}{
		{"empty when matches all", config.Match{}, Principal{}, true},
		{"principal exact", config.Match{Principal: "CN=svc"}, Principal{Identity: "CN=svc"}, true},
		{"principal case-sensitive", config.Match{Principal: "svc"}, Principal{Identity: "Svc"}, false},
		{"principal star needs a principal", config.Match{Principal: "*"}, Principal{}, false},
		{"principal star matches a SPIFFE ID", config.Match{Principal: "*"}, Principal{Identity: "spiffe://td/ns/a/sa/b"}, true},
		{"user glob", config.Match{User: "batch_*"}, Principal{User: "batch_1"}, true},
		{"user glob miss", config.Match{User: "batch_*"}, Principal{User: "batch"}, false},
		{"database", config.Match{Database: "app"}, Principal{Database: "app"}, true},
		{"database miss", config.Match{Database: "app"}, Principal{Database: "postgres"}, false},
		{"listener", config.Match{Listener: "appdb"}, Principal{Listener: "appdb"}, true},
		{"all fields", config.Match{Principal: "p", User: "u", Database: "d", Listener: "l", Source: "10.0.0.0/8"},
			Principal{Identity: "p", User: "u", Database: "d", Listener: "l", Source: v4}, true},
		{"all fields but one", config.Match{Principal: "p", User: "u", Database: "d", Listener: "l", Source: "10.0.0.0/8"},
			Principal{Identity: "p", User: "u", Database: "x", Listener: "l", Source: v4}, false},
		{"CIDR v4", config.Match{Source: "10.20.0.0/16"}, Principal{Source: v4}, true},
		{"CIDR v4 miss", config.Match{Source: "10.21.0.0/16"}, Principal{Source: v4}, false},
		{"CIDR host bits ignored", config.Match{Source: "10.20.30.1/24"}, Principal{Source: v4}, true},
		{"CIDR /32", config.Match{Source: "10.20.30.40/32"}, Principal{Source: v4}, true},
		{"CIDR /0 v4", config.Match{Source: "0.0.0.0/0"}, Principal{Source: v4}, true},
		{"CIDR v4 does not match v6", config.Match{Source: "0.0.0.0/0"}, Principal{Source: v6}, false},
		{"CIDR v6", config.Match{Source: "2001:db8::/32"}, Principal{Source: v6}, true},
		{"CIDR v6 miss", config.Match{Source: "2001:db9::/32"}, Principal{Source: v6}, false},
		{"CIDR v4 matches a mapped client", config.Match{Source: "10.0.0.0/8"}, Principal{Source: netip.MustParseAddr("::ffff:10.1.2.3")}, true},
		{"mapped CIDR matches a v4 client", config.Match{Source: "::ffff:10.0.0.0/104"}, Principal{Source: v4}, true},
		{"CIDR v6 with a zone", config.Match{Source: "fe80::/10"}, Principal{Source: netip.MustParseAddr("fe80::1%eth0")}, true},
		{"CIDR needs an address", config.Match{Source: "0.0.0.0/0"}, Principal{}, false},
		{"source glob", config.Match{Source: "10.20.*"}, Principal{Source: v4}, true},
		{"source glob miss", config.Match{Source: "10.2.*"}, Principal{Source: v4}, false},
		{"source exact", config.Match{Source: "10.20.30.40"}, Principal{Source: v4}, true},
		{"source star needs an address (Unix socket)", config.Match{Source: "*"}, Principal{}, false},
		{"source glob v6", config.Match{Source: "2001:db8::*"}, Principal{Source: v6}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compileMatch("when", tt.when)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(&tt.p); got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	for _, def := range []string{"allow", "deny"} {
		t.Run(def, func(t *testing.T) {
			eng := load(t, "policy: {default: "+def+"}\n")
			s := eng.Session(Principal{User: "anyone"})
			if s.RuleName() != "default" {
				t.Fatalf("rule = %s", s.RuleName())
			}
			want := Allow
			if def == "deny" {
				want = Deny
			}
			for _, d := range []Decision{
				sql(t, s, "DELETE FROM t"),
				s.CheckRedis(bg, RedisCommand{Name: "flushall", Categories: []string{"@keyspace", "@write", "@slow", "@dangerous"}}),
			} {
				if d.Action != want || d.Rule != "default" {
					t.Errorf("decision = %+v, want %v by default", d, want)
				}
				if want == Deny && d.Message == "" {
					t.Errorf("deny without a message")
				}
			}
			// Transaction control and the Redis handshake are allowed even so.
			for _, q := range []string{"BEGIN", "commit", "ROLLBACK", "SAVEPOINT a; RELEASE a", "ROLLBACK TO SAVEPOINT a", "START TRANSACTION READ ONLY", "END"} {
				if d := sql(t, s, q); d.Action != Allow {
					t.Errorf("%s: %+v", q, d)
				}
			}
			for _, c := range []string{"multi", "exec", "discard", "ping", "quit", "hello", "auth"} {
				if d := s.CheckRedis(bg, RedisCommand{Name: c}); d.Action != Allow {
					t.Errorf("%s: %+v", c, d)
				}
			}
			if def == "deny" {
				for _, q := range []string{"COMMIT PREPARED 'x'", "PREPARE TRANSACTION 'x'", "BEGIN; SELECT 1; COMMIT"} {
					if d := sql(t, s, q); d.Action != Deny {
						t.Errorf("%s: %+v", q, d)
					}
				}
			}
		})
	}
}

func TestAuditMode(t *testing.T) {
	eng := load(t, `
policy:
  default: deny
  rules:
    - name: batch-trial
      when: {user: batch}
      postgres: {statements: [select, insert]}
      redis: {categories: ["@read"]}
      mode: audit
      message: batch is moving to read-mostly
`)
	s := eng.Session(Principal{User: "batch"})
	d := sql(t, s, "DELETE FROM jobs")
	if d.Action != Allow || !d.Audit || d.Rule != "batch-trial" {
		t.Fatalf("audit decision = %+v", d)
	}
	if !strings.Contains(d.Message, "delete") || !strings.Contains(d.Message, "batch is moving to read-mostly") {
		t.Errorf("message = %q", d.Message)
	}
	if d.Outcome() != "audit_deny" {
		t.Errorf("outcome = %s", d.Outcome())
	}
	if code, msg := d.PostgresError(); code != "" || msg != "" {
		t.Errorf("audit renders an error: %s %s", code, msg)
	}
	if d := sql(t, s, "INSERT INTO jobs VALUES (1)"); d.Action != Allow || d.Audit || d.Message != "" {
		t.Errorf("allowed under audit = %+v", d)
	}
	if d := s.CheckRedis(bg, RedisCommand{Name: "set", Categories: []string{"@write", "@string", "@slow"}}); !d.Audit || d.Action != Allow {
		t.Errorf("redis audit = %+v", d)
	}
}

func TestMissingSectionDeniesProtocol(t *testing.T) {
	eng := load(t, `
policy:
  rules:
    - name: pg-only
      when: {user: app}
      postgres: {statements: [select]}
    - name: redis-only
      when: {user: cache}
      redis: {commands: [get]}
    - name: pg-anything
      when: {user: admin}
      postgres: {}
`)
	pgOnly := eng.Session(Principal{User: "app"})
	if d := pgOnly.CheckRedis(bg, RedisCommand{Name: "get", Categories: []string{"@read"}}); d.Action != Deny || !strings.Contains(d.Message, "no Redis") {
		t.Errorf("redis under a postgres-only rule = %+v", d)
	}
	if d := pgOnly.CheckRedis(bg, RedisCommand{Name: "ping"}); d.Action != Allow {
		t.Errorf("ping = %+v", d)
	}
	redisOnly := eng.Session(Principal{User: "cache"})
	if d := sql(t, redisOnly, "SELECT 1"); d.Action != Deny || !strings.Contains(d.Message, "no Postgres") {
		t.Errorf("postgres under a redis-only rule = %+v", d)
	}
	if d := sql(t, redisOnly, "BEGIN"); d.Action != Allow {
		t.Errorf("BEGIN = %+v", d)
	}
	anything := eng.Session(Principal{User: "admin"})
	for _, q := range []string{"DROP TABLE x", "DO $$ BEGIN END $$", "COPY t FROM STDIN", "selec 1"} {
		if d := sql(t, anything, q); d.Action != Allow {
			t.Errorf("%s under postgres: {} = %+v", q, d)
		}
	}
}

func TestErrorRendering(t *testing.T) {
	deny := Decision{Action: Deny, Rule: "reporting", Message: "table public.secrets is not allowed (reporting is read-only)"}
	code, msg := deny.PostgresError()
	if code != "42501" || msg != `permission denied by policy rule "reporting": table public.secrets is not allowed (reporting is read-only)` {
		t.Errorf("deny: %s %q", code, msg)
	}
	if got := deny.RedisError(); got != `NOPERM policy rule "reporting": table public.secrets is not allowed (reporting is read-only)` {
		t.Errorf("deny redis: %q", got)
	}
	limited := Decision{Action: RateLimited, Rule: "per-principal", Limit: "per-principal", Message: "more than 100 requests per second (burst 10)"}
	code, msg = limited.PostgresError()
	if code != "53400" || !strings.HasPrefix(code, "53") || msg != `rate limited by policy rate limit "per-principal": more than 100 requests per second (burst 10)` {
		t.Errorf("limited: %s %q", code, msg)
	}
	if got := limited.RedisError(); got != "ERR rate limited per-principal" {
		t.Errorf("limited redis: %q", got)
	}
	if got := (Decision{Action: Deny, Rule: "r", Message: "a\r\nb"}).RedisError(); strings.ContainsAny(got, "\r\n") {
		t.Errorf("CRLF kept: %q", got)
	}
	if code, msg := (Decision{Action: Allow, Rule: "r", Delay: 5}).PostgresError(); code != "" || msg != "" {
		t.Error("allow renders an error")
	}
	if (Decision{Action: Allow}).RedisError() != "" {
		t.Error("allow renders an error")
	}
	for d, want := range map[Decision]string{
		{Action: Allow}:              "allow",
		{Action: Allow, Delay: 1}:    "delayed",
		{Action: Allow, Audit: true}: "audit_deny",
		{Action: Deny}:               "deny",
		{Action: Deny, Delay: 1}:     "deny",
		{Action: RateLimited}:        "rate_limited",
	} {
		if got := d.Outcome(); got != want {
			t.Errorf("%+v: outcome %s, want %s", d, got, want)
		}
	}
	if Allow.String() != "allow" || Deny.String() != "deny" || RateLimited.String() != "rate_limited" {
		t.Error("Action.String")
	}
}

// A denied client's error names the rule and carries its message, and a
// client-sent command name cannot break the RESP line.
func TestDenyMessages(t *testing.T) {
	eng := load(t, `
policy:
  rules:
    - name: reporting
      when: {user: r}
      postgres: {statements: [select], tables: [public.orders]}
      redis: {categories: ["@read"]}
      message: "reporting is read-only"
`)
	s := eng.Session(Principal{User: "r"})
	_, msg := sql(t, s, "SELECT * FROM secrets").PostgresError()
	if msg != `permission denied by policy rule "reporting": table secrets is not allowed (reporting is read-only)` {
		t.Errorf("message = %q", msg)
	}
	d := s.CheckRedis(bg, RedisCommand{Name: "evil\r\n+OK"})
	if got := d.RedisError(); strings.ContainsAny(got, "\r\n") || !strings.HasPrefix(got, `NOPERM policy rule "reporting": command evil`) {
		t.Errorf("redis error = %q", got)
	}
}

func TestCompileErrors(t *testing.T) {
	cfg := config.Policy{
		Default: "maybe",
		Rules: []config.Rule{
			{Name: "default"},
			{Name: "a", When: config.Match{User: "[", Source: "10.0.0.0/33"}, Postgres: &config.PostgresRule{
				Statements: []string{"select", "selet"}, Tables: []string{"a.b.c.d", "["}, Functions: []string{""},
			}, Redis: &config.RedisRule{Categories: []string{"@read", "@nope"}, Keys: []string{"[a"}, Commands: []string{"get x"}}},
			{Name: "a", Mode: "loud"},
		},
		RateLimits: []config.RateLimit{
			{Name: "l", Rate: 0, Burst: 0, Per: "everyone", OnLimit: "sleep", MaxDelay: -1},
			{Name: "l", Rate: 1, Burst: 1},
		},
	}
	_, err := Compile(cfg)
	if err == nil {
		t.Fatal("compiled")
	}
	for _, want := range []string{
		"policy.default:",
		"policy.rules[0].name:",
		"policy.rules[1].when.user:",
		"policy.rules[1].when.source:",
		"policy.rules[1].postgres.statements[1]: unknown statement kind \"selet\"",
		"policy.rules[1].postgres.tables[0]:",
		"policy.rules[1].postgres.tables[1]:",
		"policy.rules[1].postgres.functions[0]:",
		"policy.rules[1].redis.categories[1]: unknown ACL category \"@nope\"",
		"policy.rules[1].redis.keys[0]:",
		"policy.rules[1].redis.commands[0]:",
		"policy.rules[2].name: rule \"a\" is named twice",
		"policy.rules[2].mode:",
		"policy.rate_limits[0].rate:",
		"policy.rate_limits[0].burst:",
		"policy.rate_limits[0].per:",
		"policy.rate_limits[0].on_limit:",
		"policy.rate_limits[0].max_delay:",
		"policy.rate_limits[1].name: rate limit \"l\" is named twice",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "statements[0]") || strings.Contains(err.Error(), "categories[0]") {
		t.Errorf("a good entry is reported:\n%v", err)
	}
	if _, err := Compile(config.Policy{}, WithMaxBuckets(0)); err == nil {
		t.Error("WithMaxBuckets(0) accepted")
	}
}

// withDefaults fills what config.Load fills, and does not touch its input.
func TestDefaultsMatchConfigLoad(t *testing.T) {
	cfg, err := config.Load(config.Source{Data: []byte(`
policy:
  rules:
    - {name: a, postgres: {statements: [select]}}
  rate_limits:
    - {name: l, rate: 1, burst: 1, max_delay: 100ms}
`), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	in := config.Policy{
		Rules:      []config.Rule{{Name: "a", Postgres: &config.PostgresRule{Statements: []string{"select"}}}},
		RateLimits: []config.RateLimit{{Name: "l", Rate: 1, Burst: 1, MaxDelay: cfg.Policy.RateLimits[0].MaxDelay}},
	}
	got := withDefaults(in)
	if !reflect.DeepEqual(got, cfg.Policy) {
		t.Errorf("withDefaults = %+v\nconfig.Load = %+v", got, cfg.Policy)
	}
	if in.Rules[0].Mode != "" || in.Rules[0].Postgres.OnParseError != "" || in.RateLimits[0].Per != "" || in.Default != "" {
		t.Error("withDefaults modified its input")
	}
}
