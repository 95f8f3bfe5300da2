package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// designExample is the config example of the design document: a contract.
const designExample = `
admin:
  listen: 127.0.0.1:9901
postgres:
  - name: appdb
    listen: 127.0.0.1:6432
    upstream: {address: 127.0.0.1:5432, tls: {mode: disable}}
    pool: {mode: transaction, size: 20, min_idle: 2, max_clients: 10000, acquire_timeout: 5s}
    auth:
      method: scram-sha-256
      users:
        - {name: app, password: app}
redis:
  - name: cache
    listen: 127.0.0.1:6380
    upstream: {address: 127.0.0.1:6379}
    pool: {size: 4}
tcp:
  - {name: other, listen: 127.0.0.1:7000, upstream: {address: 127.0.0.1:7001}}
http:
  - name: api
    listen: 127.0.0.1:8080
    routes: [{prefix: /, upstream: {address: 127.0.0.1:8081}}]
policy:
  default: allow
  rules:
    - name: reporting
      when: {principal: "spiffe://example.org/ns/prod/sa/reporting"}
      postgres: {statements: [select], tables: ["public.orders", "public.customers"]}
      redis: {categories: ["@read"], keys: ["report:*"]}
    - name: batch-trial
      when: {user: batch}
      postgres: {statements: [select, insert]}
      mode: audit
  rate_limits:
    - name: per-principal
      when: {principal: "*"}
      rate: 500
      burst: 50
      per: principal
      on_limit: reject
`

func load(t *testing.T, yaml string, environ ...string) (*Config, error) {
	t.Helper()
	if environ == nil {
		environ = []string{}
	}
	return Load(Source{Data: []byte(yaml), Environ: environ})
}

func TestDesignExampleLoads(t *testing.T) {
	cfg, err := load(t, designExample)
	if err != nil {
		t.Fatalf("design example rejected:\n%v", err)
	}
	if got := len(cfg.Listeners()); got != 4 {
		t.Fatalf("listeners = %d, want 4", got)
	}
	pg := cfg.Postgres[0]
	if pg.Pool.MinIdle != 2 || pg.Pool.AcquireTimeout != 5*time.Second || pg.Pool.ServerLifetime != time.Hour {
		t.Errorf("pool = %+v", pg.Pool)
	}
	if pg.Auth.Users[0].Password.Reveal() != "app" {
		t.Errorf("password not decoded")
	}
	if cfg.Policy.Rules[1].Mode != "audit" || cfg.Policy.Rules[0].Mode != "enforce" {
		t.Errorf("rule modes = %q %q", cfg.Policy.Rules[0].Mode, cfg.Policy.Rules[1].Mode)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, `tcp: [{name: t, listen: "127.0.0.1:0", upstream: {address: "127.0.0.1:1"}}]`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:9901"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
		{"shutdown.drain_timeout", cfg.Shutdown.DrainTimeout, 30 * time.Second},
		{"reload.watch", cfg.Reload.Watch, true},
		{"runtime.max_procs", cfg.Runtime.MaxProcs, "auto"},
		{"tcp[0].idle_timeout", cfg.TCP[0].IdleTimeout, time.Hour},
		{"tcp[0].max_connections", cfg.TCP[0].MaxConnections, 10000},
		{"tcp[0].upstream.connect_timeout", cfg.TCP[0].Upstream.ConnectTimeout, 5 * time.Second},
		{"tcp[0].upstream.tls.mode", cfg.TCP[0].Upstream.TLS.Mode, "disable"},
		{"policy.default", cfg.Policy.Default, "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestRuntimeMaxProcs(t *testing.T) {
	tests := []struct {
		maxProcs     string
		runtimeProcs int
		env          bool
		want         int
	}{
		{"auto", 1, false, 1},
		{"auto", 2, false, 1},
		{"auto", 3, false, 2},
		{"auto", 8, false, 4},
		{"auto", 8, true, 8}, // GOMAXPROCS in the environment wins over auto
		{"3", 2, false, 3},
		{"3", 8, true, 3}, // a number in the config wins over the environment
	}
	for _, tt := range tests {
		if got := (Runtime{MaxProcs: tt.maxProcs}).Procs(tt.runtimeProcs, tt.env); got != tt.want {
			t.Errorf("max_procs %q, runtime default %d, env %v: %d, want %d", tt.maxProcs, tt.runtimeProcs, tt.env, got, tt.want)
		}
	}
	for _, bad := range []string{"0", "-1", "many", ""} {
		_, err := load(t, "runtime: {max_procs: \""+bad+"\"}")
		if err == nil || !strings.Contains(err.Error(), "runtime.max_procs") {
			t.Errorf("max_procs %q: got %v, want an error naming runtime.max_procs", bad, err)
		}
	}
	if _, err := load(t, "runtime: {max_procs: 2}"); err != nil {
		t.Errorf("max_procs 2: %v", err)
	}
}

func TestErrorsAreAllReported(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"three problems", `
postgres:
  - name: a
    listen: 127.0.0.1:6432
    upstream: {address: 127.0.0.1:5432}
    pool: {size: 0, mode: sometimes}
    auth: {method: trust}
tcp:
  - {name: b, listen: nonsense, upstream: {address: 127.0.0.1:1}}
`, []string{"postgres[0].pool.size: must be > 0", "postgres[0].pool.mode:", "tcp[0].listen:"}},
		{"unknown keys", `
admin: {listen: 127.0.0.1:9901, lisen: x}
tcp: [{name: t, listen: "127.0.0.1:0", upstream: {address: "127.0.0.1:1", adress: y}}]
`, []string{"admin.lisen: unknown key", "tcp[0].upstream.adress: unknown key"}},
		{"duplicates", `
tcp:
  - {name: t, listen: "127.0.0.1:7000", upstream: {address: "127.0.0.1:1"}}
  - {name: t, listen: "127.0.0.1:7000", upstream: {address: "127.0.0.1:1"}}
`, []string{`tcp[1].name: "t" is already the name of tcp[0]`, "tcp[1].listen: 127.0.0.1:7000 is already used by tcp[0].listen"}},
		{"bad types", `shutdown: {drain_timeout: soon}`, []string{"drain_timeout"}},
		{"missing tls profile", `tcp: [{name: t, listen: "127.0.0.1:0", tls: mesh, upstream: {address: "127.0.0.1:1"}}]`,
			[]string{`tcp[0].tls: no TLS profile named "mesh"`}},
		{"unset env secret", `
postgres:
  - name: a
    listen: 127.0.0.1:6432
    upstream: {address: 127.0.0.1:5432}
    auth: {users: [{name: app, password: "${NOPE_NOT_SET}"}]}
`, []string{"postgres[0].auth.users[0].password: environment variable NOPE_NOT_SET is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml)
			if err == nil {
				t.Fatal("accepted")
			}
			errs := Flatten(err)
			text := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("missing %q in:\n%s", w, text)
				}
			}
			if len(errs) < len(tt.want) {
				t.Errorf("%d errors, want >= %d", len(errs), len(tt.want))
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("from-file\n"), 0o600)
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte(`
postgres:
  - name: a
    listen: 127.0.0.1:6432
    upstream: {address: 127.0.0.1:5432}
    auth:
      users:
        - {name: f, password_file: pw}
        - {name: e, password: "x${APP_PW}y"}
`), 0o600)
	cfg, err := Load(Source{Path: cfgPath, Environ: []string{"APP_PW=s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Postgres[0].Auth.Users
	if u[0].Password.Reveal() != "from-file" || u[1].Password.Reveal() != "xs3crety" {
		t.Fatalf("secrets = %q %q", u[0].Password.Reveal(), u[1].Password.Reveal())
	}
	js, _ := json.Marshal(cfg)
	for _, s := range []string{string(js), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "from-file") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if !strings.Contains(string(js), redacted) {
		t.Errorf("no redaction marker in %s", js)
	}
}

func TestEnvAndFlagsOverride(t *testing.T) {
	yaml := `admin: {listen: "127.0.0.1:9901"}
shutdown: {drain_timeout: 10s}
log: {level: info}`
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("log.level", "", "")
	fs.String("admin.listen", "", "")
	if err := fs.Parse([]string{"--log.level=debug"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Source{Data: []byte(yaml), Flags: fs, Environ: []string{
		"OUTRIGGER_SHUTDOWN__DRAIN_TIMEOUT=3s", "OUTRIGGER_LOG__LEVEL=warn", "OUTRIGGER_CONFIG=ignored.yaml",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Shutdown.DrainTimeout != 3*time.Second {
		t.Errorf("env: drain_timeout = %v", cfg.Shutdown.DrainTimeout)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("flag should beat env: level = %q", cfg.Log.Level)
	}
	if cfg.Admin.Listen != "127.0.0.1:9901" {
		t.Errorf("unset flag applied: %q", cfg.Admin.Listen)
	}
}

func TestHash(t *testing.T) {
	a, _ := load(t, designExample)
	b, _ := load(t, designExample)
	if Hash(a) != Hash(b) {
		t.Fatal("equal configs hash differently")
	}
	b.Postgres[0].Auth.Users[0].Password = "other"
	if Hash(a) == Hash(b) {
		t.Fatal("a password change does not change the hash")
	}
	if Hash(a.TCP[0]) == Hash(a.HTTP[0]) {
		t.Fatal("different sections hash alike")
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, network string
		ok          bool
	}{
		{"127.0.0.1:6432", "tcp", true},
		{"[::1]:6432", "tcp", true},
		{":0", "tcp", true},
		{"unix:/tmp/.s.PGSQL.6432", "unix", true},
		{"unix:", "", false},
		{"localhost", "", false},
		{"127.0.0.1:99999", "", false},
	}
	for _, tt := range tests {
		network, _, err := ParseAddress(tt.in)
		if (err == nil) != tt.ok || network != tt.network {
			t.Errorf("ParseAddress(%q) = %q, %v", tt.in, network, err)
		}
	}
}

func TestDurationsNeedUnits(t *testing.T) {
	if _, err := load(t, `shutdown: {drain_timeout: 5}`); err == nil || !strings.Contains(err.Error(), "shutdown.drain_timeout: 5: a duration needs a unit") {
		t.Fatalf("bare number accepted as a duration: %v", err)
	}
	cfg, err := load(t, `shutdown: {drain_timeout: 0}`)
	if err != nil || cfg.Shutdown.DrainTimeout != 0 {
		t.Fatalf("0 rejected: %v", err)
	}
}

func TestEnvCannotReachIntoLists(t *testing.T) {
	_, err := load(t, `tcp: [{name: t, listen: "127.0.0.1:0", upstream: {address: "127.0.0.1:1"}}]`, "OUTRIGGER_TCP__0__IDLE_TIMEOUT=5m")
	if err == nil || !strings.Contains(err.Error(), "OUTRIGGER_TCP__0__IDLE_TIMEOUT: environment variables cannot set keys inside lists") {
		t.Fatalf("err = %v", err)
	}
}

func TestHashIgnoresPath(t *testing.T) {
	a, _ := load(t, designExample)
	b, _ := load(t, designExample)
	b.Path = "/elsewhere/outrigger.yaml"
	if Hash(a) != Hash(b) {
		t.Fatal("the file's path changes the hash")
	}
}
