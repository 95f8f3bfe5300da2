package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const explainConfig = `redis:
  - name: cache
    listen: 127.0.0.1:0
    upstream: {address: 127.0.0.1:6379}
policy:
  default: deny
  rules:
    - name: reporting
      when: {principal: "spiffe://example.org/ns/prod/sa/reporting"}
      postgres: {statements: [select], tables: ["public.orders"]}
      redis: {categories: ["@read"], keys: ["report:*"]}
    - name: batch-trial
      when: {user: batch}
      postgres: {statements: [select, insert]}
      mode: audit
    - name: office
      when: {source: "10.0.0.0/8", listener: cache}
      redis: {commands: [get]}
  rate_limits:
    - {name: slow, when: {user: slowpoke}, rate: 1, burst: 1}
`

func writeExplainConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyExplain(t *testing.T) {
	cfg := writeExplainConfig(t, explainConfig)
	const reporting = "spiffe://example.org/ns/prod/sa/reporting"
	tests := []struct {
		name string
		args []string
		code int
		want []string // lines or parts of lines the output must have
	}{
		{"redis read allowed", []string{"--principal", reporting, "--redis", "GET report:1"}, 0,
			[]string{"session rule: reporting", "redis command: get", "categories: @read @string @fast", `keys: "report:1"`, "action: allow"}},
		{"redis key at the second position", []string{"--principal", reporting, "--redis", "mget report:1 other"}, 1,
			[]string{"action: deny", "rule: reporting", "message: no permissions to access a key", `client gets: -NOPERM policy rule "reporting"`}},
		{"redis write refused", []string{"--principal", reporting, "--redis", `set "report:a b" 'it\'s'`}, 1,
			[]string{`keys: "report:a b"`, "message: command set is not allowed"}},
		{"redis quoting", []string{"--principal", reporting, "--redis", `GET "report:\x41\n"`}, 0,
			[]string{`keys: "report:A\n"`, "action: allow"}},
		{"redis sort by", []string{"--principal", reporting, "--redis", "SORT_RO report:l BY w_*"}, 1,
			[]string{"undeclared keys: yes", "action: deny"}},
		{"redis subcommand", []string{"--principal", reporting, "--redis", "config get maxmemory"}, 1,
			[]string{"redis command: config|get", "action: deny"}},
		{"redis unknown command", []string{"--principal", reporting, "--redis", "NOSUCH k"}, 1,
			[]string{"redis command: nosuch (not in the command table)"}},
		{"redis always allowed", []string{"--redis", "PING"}, 0,
			[]string{"user: default", "session rule: default", "action: allow"}},
		{"redis default deny", []string{"--redis", "GET k"}, 1,
			[]string{"session rule: default", "action: deny", `-NOPERM policy rule "default"`}},
		{"source and listener", []string{"--source", "10.1.2.3", "--listener", "cache", "--redis", "GET anything"}, 0,
			[]string{"source: 10.1.2.3", "session rule: office", "action: allow"}},
		{"sql allowed", []string{"--principal", reporting, "--database", "app", "--sql", "SELECT id FROM orders"}, 0,
			[]string{"statement 1: select", "kinds: select", "tables: orders", "read-only: true", "action: allow"}},
		{"sql table refused", []string{"--principal", reporting, "--sql", "SELECT * FROM orders JOIN users ON true"}, 1,
			[]string{"tables: orders users", "action: deny", "client gets: ERROR 42501"}},
		{"sql function shown", []string{"--principal", reporting, "--sql", "SELECT nextval('s')"}, 1,
			[]string{"functions: nextval", "read-only: false", "action: deny"}},
		{"sql audit", []string{"--user", "batch", "--sql", "DELETE FROM t"}, 0,
			[]string{"session rule: batch-trial", "action: audit_deny", "message:"}},
		{"sql not parsed", []string{"--principal", reporting, "--sql", "SELEC 1"}, 1,
			[]string{"sql: not parsed", "action: deny"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"policy", "explain", "-c", cfg}, tt.args...)
			code := Main(context.Background(), args, Options{Stdout: &out, Stderr: &errOut, Environ: []string{}})
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestPolicyExplainUsage(t *testing.T) {
	good := writeExplainConfig(t, explainConfig)
	bad := writeExplainConfig(t, "policy:\n  default: maybe\n  rules: [{name: x, redis: {categories: ['@nosuch']}}]\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no request", []string{"policy", "explain", "-c", good}, "give one of --sql and --redis"},
		{"both requests", []string{"policy", "explain", "-c", good, "--sql", "select 1", "--redis", "GET k"}, "give one of"},
		{"no config", []string{"policy", "explain", "--redis", "GET k"}, "no config"},
		{"bad source", []string{"policy", "explain", "-c", good, "--source", "nowhere", "--redis", "GET k"}, "--source"},
		{"unbalanced quote", []string{"policy", "explain", "-c", good, "--redis", `GET "k`}, "unbalanced"},
		{"empty command", []string{"policy", "explain", "-c", good, "--redis", "   "}, "no command"},
		{"bad config", []string{"policy", "explain", "-c", bad, "--redis", "GET k"}, "policy.default"},
		{"missing file", []string{"policy", "explain", "-c", filepath.Join(t.TempDir(), "none.yaml"), "--redis", "GET k"}, "invalid config"},
		{"no subcommand", []string{"policy"}, "explain"},
		{"unknown flag", []string{"policy", "explain", "--nosuch"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), tt.args, Options{Stdout: &out, Stderr: &errOut, Environ: []string{}})
			if code != 2 {
				t.Errorf("exit code %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut.String())
			}
		})
	}
	var out bytes.Buffer
	Main(context.Background(), []string{"help"}, Options{Stdout: &out, Stderr: &out})
	if !strings.Contains(out.String(), "outrigger policy explain") {
		t.Errorf("usage does not mention policy explain:\n%s", out.String())
	}
}
