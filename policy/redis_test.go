package policy

import (
	"strings"
	"testing"

	"github.com/outrigger/outrigger/config"
)

func keys(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

var (
	catGet    = []string{"@read", "@string", "@fast"}
	catSet    = []string{"@write", "@string", "@slow"}
	catEval   = []string{"@slow", "@scripting"}
	catFlush  = []string{"@keyspace", "@write", "@slow", "@dangerous"}
	catKill   = []string{"@admin", "@slow", "@dangerous", "@connection"}
	catCliLst = []string{"@admin", "@slow", "@dangerous", "@connection"}
	catSort   = []string{"@write", "@set", "@sortedset", "@list", "@slow", "@dangerous"}
)

const redisRules = `
policy:
  default: deny
  rules:
    - name: reader
      when: {user: reader}
      redis: {categories: ["@read"], keys: ["report:*", "cache:{user}:?"]}
    - name: named
      when: {user: named}
      redis: {commands: [get, SET, client, "config|get"]}
    - name: mixed
      when: {user: mixed}
      redis: {commands: [eval], categories: [read, "@WRITE"], keys: ["app:*"]}
    - name: all
      when: {user: all}
      redis: {categories: ["@all"], keys: ["app:*"]}
    - name: keysonly
      when: {user: keysonly}
      redis: {keys: ["app:*"]}
`

func TestRedis(t *testing.T) {
	eng := load(t, redisRules)
	tests := []struct {
		user  string
		cmd   RedisCommand
		allow bool
		why   string
	}{
		// Categories and keys.
		{"reader", RedisCommand{Name: "get", Categories: catGet, Keys: keys("report:1")}, true, ""},
		{"reader", RedisCommand{Name: "get", Categories: catGet, Keys: keys("report:2024/q1")}, true, ""},
		{"reader", RedisCommand{Name: "get", Categories: catGet, Keys: keys("secret:1")}, false, "access a key"},
		{"reader", RedisCommand{Name: "get", Categories: catGet, Keys: keys("cache:{user}:7")}, true, ""},
		{"reader", RedisCommand{Name: "get", Categories: catGet, Keys: keys("cache:{user}:77")}, false, "access a key"},
		{"reader", RedisCommand{Name: "set", Categories: catSet, Keys: keys("report:1")}, false, "command set"},
		{"reader", RedisCommand{Name: "flushall", Categories: catFlush}, false, "command flushall"},
		// Every key position: MGET's every key, MSET's every other argument.
		{"reader", RedisCommand{Name: "mget", Categories: catGet, Keys: keys("report:1", "report:2", "report:3")}, true, ""},
		{"reader", RedisCommand{Name: "mget", Categories: catGet, Keys: keys("report:1", "secret", "report:3")}, false, "access a key"},
		{"reader", RedisCommand{Name: "mget", Categories: catGet, Keys: keys("report:1", "report:2", "secret")}, false, "access a key"},
		{"mixed", RedisCommand{Name: "mset", Categories: catSet, Keys: keys("app:1", "app:2")}, true, ""},
		{"mixed", RedisCommand{Name: "mset", Categories: catSet, Keys: keys("app:1", "other")}, false, "access a key"},
		// EVAL with numkeys: the keys the caller found.
		{"mixed", RedisCommand{Name: "eval", Categories: catEval, Keys: keys("app:a", "app:b")}, true, ""},
		{"mixed", RedisCommand{Name: "eval", Categories: catEval, Keys: keys("app:a", "x")}, false, "access a key"},
		{"mixed", RedisCommand{Name: "eval", Categories: catEval}, true, ""}, // numkeys 0
		{"mixed", RedisCommand{Name: "fcall", Categories: catEval, Keys: keys("app:a")}, false, "command fcall"},
		{"reader", RedisCommand{Name: "eval", Categories: catEval, Keys: keys("report:1")}, false, "command eval"},
		// Names: case of the rule, containers and subcommands.
		{"named", RedisCommand{Name: "get", Categories: catGet, Keys: keys("any")}, true, ""},
		{"named", RedisCommand{Name: "set", Categories: catSet, Keys: keys("any")}, true, ""},
		{"named", RedisCommand{Name: "del", Categories: catSet, Keys: keys("any")}, false, "command del"},
		{"named", RedisCommand{Name: "client|kill", Categories: catKill}, true, ""},
		{"named", RedisCommand{Name: "client|list", Categories: catCliLst}, true, ""},
		{"named", RedisCommand{Name: "config|get", Categories: catCliLst}, true, ""},
		{"named", RedisCommand{Name: "config|set", Categories: catCliLst}, false, "command config|set"},
		{"named", RedisCommand{Name: "config", Categories: catCliLst}, false, "command config"},
		// @all, and rules that restrict only keys.
		{"all", RedisCommand{Name: "flushall", Categories: catFlush}, true, ""}, // key-less: as in Redis's ACL
		{"all", RedisCommand{Name: "del", Categories: catSet, Keys: keys("app:1")}, true, ""},
		{"all", RedisCommand{Name: "del", Categories: catSet, Keys: keys("x")}, false, "access a key"},
		{"all", RedisCommand{Name: "nosuchcommand"}, true, ""},
		{"keysonly", RedisCommand{Name: "del", Categories: catSet, Keys: keys("app:1")}, true, ""},
		{"keysonly", RedisCommand{Name: "del", Categories: catSet, Keys: keys("x")}, false, "access a key"},
		// SORT ... BY/GET names keys Keys cannot list.
		{"all", RedisCommand{Name: "sort", Categories: catSort, Keys: keys("app:list"), UndeclaredKeys: true}, false, "restricts keys"},
		{"all", RedisCommand{Name: "sort", Categories: catSort, Keys: keys("app:list")}, true, ""},
		{"named", RedisCommand{Name: "get", Categories: catGet, Keys: keys("x"), UndeclaredKeys: true}, true, ""}, // keys not restricted
		// Always allowed, whatever the rule.
		{"reader", RedisCommand{Name: "multi", Categories: []string{"@fast", "@transaction"}}, true, ""},
		{"reader", RedisCommand{Name: "exec", Categories: []string{"@slow", "@transaction"}}, true, ""},
		{"reader", RedisCommand{Name: "ping", Categories: []string{"@fast", "@connection"}}, true, ""},
		{"reader", RedisCommand{Name: "watch", Categories: []string{"@fast", "@transaction"}, Keys: keys("report:1")}, false, "command watch"},
	}
	for _, tt := range tests {
		t.Run(tt.user+" "+tt.cmd.Name, func(t *testing.T) {
			d := eng.Session(Principal{User: tt.user}).CheckRedis(bg, tt.cmd)
			if (d.Action == Allow) != tt.allow {
				t.Fatalf("decision = %+v, want allow=%v", d, tt.allow)
			}
			if !tt.allow {
				if d.Action != Deny || d.Rule != tt.user {
					t.Errorf("decision = %+v", d)
				}
				if !strings.Contains(d.Message, tt.why) {
					t.Errorf("message %q lacks %q", d.Message, tt.why)
				}
				if !strings.HasPrefix(d.RedisError(), "NOPERM ") {
					t.Errorf("redis error %q", d.RedisError())
				}
			}
		})
	}
}

// Keys are never named in a message (they are data), and a long or
// hostile command name is cut and cleaned.
func TestRedisMessages(t *testing.T) {
	eng := load(t, redisRules)
	s := eng.Session(Principal{User: "reader"})
	d := s.CheckRedis(bg, RedisCommand{Name: "get", Categories: catGet, Keys: keys("secret:password-reset-token")})
	if strings.Contains(d.Message, "secret") {
		t.Errorf("message names the key: %q", d.Message)
	}
	d = s.CheckRedis(bg, RedisCommand{Name: strings.Repeat("x", 1000) + "\x00\x1b"})
	if len(d.Message) > 200 || strings.ContainsAny(d.Message, "\x00\x1b") {
		t.Errorf("message = %q", d.Message)
	}
}

// Enumerating the keyspace under a rule that restricts keys: only a
// pattern that can match nothing but allowed keys passes.
func TestRedisEnumerationPatterns(t *testing.T) {
	r, err := compileRedis("r", config.RedisRule{Keys: []string{"app:*", "exact:key", "g?ob*"}})
	if err != nil {
		t.Fatal(err)
	}
	any, _ := compileRedis("any", config.RedisRule{Keys: []string{"*"}})
	free, _ := compileRedis("free", config.RedisRule{})
	for _, tc := range []struct {
		pat  []byte
		want bool
	}{
		{nil, false},
		{[]byte("*"), false},
		{[]byte("app:*"), true},
		{[]byte("app:user:*"), true},
		{[]byte("app:?"), true},
		{[]byte("app:[ab]*"), true},
		{[]byte("app*"), false},
		{[]byte("*app:*"), false},
		{[]byte("ap[p]:*"), false},
		{[]byte(`app\:*`), false},
		{[]byte("other:*"), false},
		{[]byte("exact:key"), true},
		{[]byte("exact:key*"), false},
		{[]byte("app:literal"), true},
		{[]byte("glob1"), true},  // a literal key the glob rule matches
		{[]byte("glob*"), false}, // a glob rule admits no pattern
		{[]byte(""), false},
	} {
		cmd := &RedisCommand{Name: "scan", Enumerates: true, Pattern: tc.pat}
		if got := r.check(cmd) == ""; got != tc.want {
			t.Errorf("pattern %q: allowed %v, want %v", tc.pat, got, tc.want)
		}
		if any.check(cmd) != "" {
			t.Errorf("pattern %q refused by a rule that allows every key", tc.pat)
		}
		if free.check(cmd) != "" {
			t.Errorf("pattern %q refused by a rule that does not restrict keys", tc.pat)
		}
	}
}
