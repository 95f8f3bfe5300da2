package redis

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/policy"
)

func TestPolicyCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		want       string
		cats       []string
		keys       []string
		undeclared bool
	}{
		{"lower case", []string{"get", "k"}, "get", []string{"@read", "@string", "@fast"}, []string{"k"}, false},
		{"mixed case", []string{"sEt", "k", "v"}, "set", []string{"@write", "@string", "@slow"}, []string{"k"}, false},
		{"subcommand", []string{"CONFIG", "get", "maxmemory"}, "config|get", nil, nil, false},
		{"object subcommand with key", []string{"object", "ENCODING", "k"}, "object|encoding", nil, []string{"k"}, false},
		{"memory usage", []string{"MEMORY", "USAGE", "k", "SAMPLES", "5"}, "memory|usage", nil, []string{"k"}, false},
		{"unknown subcommand", []string{"client", "nosuch"}, "client", nil, nil, false},
		{"mset every other", []string{"MSET", "a", "1", "b", "2", "c", "3"}, "mset", nil, []string{"a", "b", "c"}, false},
		{"rename dest", []string{"RENAME", "a", "b"}, "rename", nil, []string{"a", "b"}, false},
		{"eval numkeys", []string{"EVAL", "return 1", "2", "a", "b", "argv1"}, "eval", nil, []string{"a", "b"}, false},
		{"evalsha numkeys", []string{"EVALSHA", "abc", "1", "a", "x"}, "evalsha", nil, []string{"a"}, false},
		{"fcall numkeys", []string{"FCALL", "f", "1", "a", "x"}, "fcall", nil, []string{"a"}, false},
		{"xread streams", []string{"XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0"}, "xread", nil, []string{"s1", "s2"}, false},
		{"zunionstore", []string{"ZUNIONSTORE", "d", "2", "a", "b"}, "zunionstore", nil, []string{"d", "a", "b"}, false},
		{"georadius store", []string{"GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"}, "georadius", nil, []string{"g", "d"}, false},
		{"bitop", []string{"BITOP", "OR", "d", "a", "b"}, "bitop", nil, []string{"d", "a", "b"}, false},
		{"sort plain", []string{"SORT", "l"}, "sort", nil, []string{"l"}, false},
		{"sort store", []string{"SORT", "l", "STORE", "d"}, "sort", nil, []string{"l", "d"}, false},
		{"sort by", []string{"SORT", "l", "BY", "w_*"}, "sort", nil, []string{"l"}, true},
		{"sort_ro get", []string{"SORT_RO", "l", "get", "h_*->f"}, "sort_ro", nil, []string{"l"}, true},
		{"unknown command", []string{"NoSuchCmd", "k"}, "nosuchcmd", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := PolicyCommand(argv(tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Name != tt.want {
				t.Errorf("Name = %q, want %q", cmd.Name, tt.want)
			}
			if tt.cats != nil && !slices.Equal(cmd.Categories, tt.cats) {
				t.Errorf("Categories = %v, want %v", cmd.Categories, tt.cats)
			}
			var keys []string
			for _, k := range cmd.Keys {
				keys = append(keys, string(k))
			}
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("Keys = %q, want %q", keys, tt.keys)
			}
			if cmd.UndeclaredKeys != tt.undeclared {
				t.Errorf("UndeclaredKeys = %v, want %v", cmd.UndeclaredKeys, tt.undeclared)
			}
		})
	}
	if _, err := PolicyCommand(nil); err == nil {
		t.Error("an empty command gave no error")
	}
}

// TestPolicyCategoriesShared checks that a command's categories are the
// table's own slice, the same on every call (no allocation per check).
func TestPolicyCategoriesShared(t *testing.T) {
	var cmds []*Command
	var walk func(c *Command)
	walk = func(c *Command) {
		cmds = append(cmds, c)
		for _, s := range c.Subcommands {
			walk(s)
		}
	}
	for _, c := range commandTable {
		walk(c)
	}
	for _, c := range cmds {
		if !slices.Equal(c.catNames, c.Categories.Names()) {
			t.Fatalf("%s: catNames %v, categories %v", c.Name, c.catNames, c.Categories.Names())
		}
	}
	a := policyCommand(Lookup(argv("get", "k")), argv("get", "k"), nil)
	b := policyCommand(Lookup(argv("GET", "j")), argv("GET", "j"), nil)
	if &a.Categories[0] != &b.Categories[0] {
		t.Error("two checks of GET got different category slices")
	}
}

// TestPolicyAgreesWithRedisACL compares the policy engine, fed by
// PolicyCommand, with Redis's own ACL (ACL DRYRUN on a real server) for
// users with the same categories and key patterns: a command is allowed by
// one exactly when it is allowed by the other.
func TestPolicyAgreesWithRedisACL(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs a real redis-server")
	}
	users := []struct {
		name, acl string
		rule      config.RedisRule
	}{
		{"reader", "~report:* +@read", config.RedisRule{Categories: []string{"@read"}, Keys: []string{"report:*"}}},
		{"writer", "~report:* +@read +@write +@scripting", config.RedisRule{Categories: []string{"@read", "@write", "@scripting"}, Keys: []string{"report:*"}}},
		{"lists", "~* +@list +get +config|get", config.RedisRule{Categories: []string{"@list"}, Commands: []string{"get", "config|get"}}},
	}
	var acl []testenv.RedisACLUser
	pol := config.Policy{Default: "deny"}
	for _, u := range users {
		acl = append(acl, testenv.RedisACLUser{Name: u.name, Rules: u.acl})
		rule := u.rule
		pol.Rules = append(pol.Rules, config.Rule{Name: u.name, When: config.Match{User: u.name}, Redis: &rule})
	}
	r := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: acl})
	eng, err := policy.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	rdb := r.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	corpus := [][]string{
		{"GET", "report:a"}, {"get", "other"}, {"SeT", "report:a", "v"}, {"SET", "other", "v"},
		{"MGET", "report:a", "other"}, {"MGET", "report:a", "report:b"},
		{"MSET", "report:a", "1", "other", "2"}, {"MSET", "report:a", "1", "report:b", "2"},
		{"RENAME", "report:a", "other"}, {"RENAME", "report:a", "report:b"},
		{"COPY", "report:a", "other"}, {"SMOVE", "report:s", "other", "m"},
		{"LMOVE", "report:l", "other", "LEFT", "RIGHT"}, {"RPOPLPUSH", "report:l", "report:m"},
		{"BITOP", "OR", "other", "report:a", "report:b"}, {"BITOP", "AND", "report:d", "report:a", "other"},
		{"ZUNIONSTORE", "report:d", "2", "report:z", "other"}, {"ZUNION", "2", "report:z", "other"},
		{"XREAD", "STREAMS", "report:s", "other", "0", "0"}, {"XREAD", "COUNT", "2", "STREAMS", "report:s", "0"},
		{"OBJECT", "ENCODING", "other"}, {"OBJECT", "FREQ", "report:a"}, {"MEMORY", "USAGE", "other"},
		{"EVAL", "return 1", "1", "other"}, {"EVAL", "return 1", "2", "report:a", "other"}, {"EVAL", "return 1", "1", "report:a"},
		{"EVAL_RO", "return 1", "1", "report:a"}, {"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "other"},
		{"FCALL", "f", "1", "other"}, {"FCALL_RO", "f", "1", "report:a"},
		{"GEORADIUS", "report:g", "0", "0", "1", "km", "STORE", "other"}, {"GEORADIUS_RO", "other", "0", "0", "1", "km"},
		{"GEOSEARCHSTORE", "other", "report:g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"},
		{"SUBSTR", "other", "0", "1"}, {"SUBSTR", "report:a", "0", "1"}, {"GETRANGE", "other", "0", "1"},
		{"SLAVEOF", "NO", "ONE"}, {"REPLICAOF", "NO", "ONE"}, {"FLUSHALL"}, {"FLUSHDB"}, {"KEYS", "*"},
		{"CONFIG", "SET", "maxmemory", "0"}, {"CONFIG", "GET", "maxmemory"}, {"ACL", "WHOAMI"},
		{"DEL", "report:a", "other"}, {"UNLINK", "report:a"}, {"EXISTS", "report:a", "other"},
		{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "report:a", "other"},
		{"MIGRATE", "127.0.0.1", "1", "report:a", "0", "100"},
		{"SORT", "report:l", "STORE", "other"}, {"SORT_RO", "report:l"},
		{"LPUSH", "report:l", "x"}, {"LPUSH", "other", "x"}, {"LRANGE", "other", "0", "-1"},
		{"BLMOVE", "report:l", "other", "LEFT", "RIGHT", "0"}, {"LMPOP", "2", "report:l", "other", "LEFT"},
		{"ZRANGESTORE", "other", "report:z", "0", "-1"}, {"PFMERGE", "other", "report:h"},
		{"SINTERCARD", "2", "report:s", "other"}, {"LCS", "report:a", "other"},
		{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "report:s", "other", ">", ">"},
		{"SWAPDB", "0", "1"}, {"SELECT", "1"}, {"WATCH", "report:a"}, {"TYPE", "other"}, {"DUMP", "report:a"},
		{"RESTORE", "other", "0", "x"}, {"GETDEL", "other"}, {"GETEX", "report:a", "PERSIST"},
		{"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}, {"PUBLISH", "ch", "m"}, {"DEBUG", "SLEEP", "0"},
	}
	for _, u := range users {
		sess := eng.Session(policy.Principal{User: u.name, Listener: "rd", Source: netip.MustParseAddr("127.0.0.1")})
		allowed, refused := 0, 0
		for _, args := range corpus {
			if u.name != "reader" && args[0] == "PUBLISH" {
				continue // channels: Redis's ACL checks them, this policy does not
			}
			dry := append([]any{"ACL", "DRYRUN", u.name}, anys(args)...)
			res, err := rdb.Do(ctx, dry...).Text()
			if err != nil {
				t.Fatalf("%v: %v", dry, err)
			}
			redisAllows := res == "OK"
			pc, err := PolicyCommand(argv(args...))
			if err != nil {
				t.Fatal(err)
			}
			d := sess.CheckRedis(ctx, pc)
			if pc.Enumerates && redisAllows && d.Action != policy.Allow {
				// Stricter than Redis by design: Redis's ACL lets a user
				// with restricted keys list every key name.
				continue
			}
			if ours := d.Action == policy.Allow; ours != redisAllows {
				t.Errorf("%s: %s: Redis ACL says %q, the policy %s (%s)", u.name, strings.Join(args, " "), res, d.Outcome(), d.Message)
			}
			if redisAllows {
				allowed++
			} else {
				refused++
			}
		}
		t.Logf("%s: %d allowed, %d refused by both", u.name, allowed, refused)
		if allowed == 0 || refused == 0 {
			t.Errorf("%s: the corpus does not exercise both answers", u.name)
		}
	}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// benchPolicy has 20 rules; the benchmark session is governed by the last,
// as in package policy's benchmarks.
func benchPolicy() config.Policy {
	p := config.Policy{Default: "deny"}
	for i := range 19 {
		p.Rules = append(p.Rules, config.Rule{
			Name:  fmt.Sprintf("r%d", i),
			When:  config.Match{Principal: fmt.Sprintf("spiffe://example.org/ns/prod/sa/svc%d", i)},
			Redis: &config.RedisRule{Categories: []string{"@read", "@write"}, Keys: []string{fmt.Sprintf("svc%d:*", i)}},
		})
	}
	p.Rules = append(p.Rules, config.Rule{
		Name:  "reporting",
		When:  config.Match{Principal: "spiffe://example.org/ns/prod/sa/reporting"},
		Redis: &config.RedisRule{Categories: []string{"@read"}, Keys: []string{"report:*", "cache:{user}:*"}},
	})
	return p
}

// BenchmarkPolicyCheck is what a session does per command under a policy:
// load the live engine, rebind, convert the command (table lookup, keys
// into the session's scratch slice) and decide, against 20 rules.
func BenchmarkPolicyCheck(b *testing.B) {
	eng, err := policy.Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	var live policy.Live
	live.Store(eng)
	for _, bc := range []struct {
		name string
		args [][]byte
	}{
		{"get", argv("GET", "report:2024:q1")},
		{"mget3", argv("MGET", "report:2024:q1", "report:2024:q2", "cache:{user}:42")},
		{"xread", argv("XREAD", "COUNT", "10", "STREAMS", "report:s1", "report:s2", "0", "0")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ps := policyState{principal: policy.Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting", User: "default", Listener: "rd"}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				c := Lookup(bc.args)
				d, enforced := ps.check(ctx, &live, c, bc.args)
				if !enforced || d.Action != policy.Allow {
					b.Fatal(d)
				}
			}
		})
	}
	b.Run("no-policy", func(b *testing.B) {
		var none policy.Live
		ps := policyState{}
		args := argv("GET", "report:1")
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, enforced := ps.check(ctx, &none, Lookup(args), args); enforced {
				b.Fatal("enforced without an engine")
			}
		}
	})
}

// TestPolicyCheckAllocs keeps the allowed path free of allocations.
func TestPolicyCheckAllocs(t *testing.T) {
	eng, err := policy.Compile(benchPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var live policy.Live
	live.Store(eng)
	ps := policyState{principal: policy.Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting", User: "default", Listener: "rd"}}
	args := argv("MGET", "report:1", "report:2", "cache:{user}:3")
	ctx := context.Background()
	ps.check(ctx, &live, Lookup(args), args) // the first check resolves the session
	if n := testing.AllocsPerRun(100, func() {
		if d, _ := ps.check(ctx, &live, Lookup(args), args); d.Action != policy.Allow {
			t.Fatal(d)
		}
	}); n != 0 {
		t.Errorf("an allowed check allocates %v times", n)
	}
	if ps.keys == nil || ps.keys[:cap(ps.keys)][0] != nil {
		t.Error("the scratch slice keeps a key after the check")
	}
}
