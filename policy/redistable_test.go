package policy_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/policy"
	"github.com/outrigger/outrigger/redis"
)

// TestCategoriesMatchRedis keeps config.RedisCategories equal to the
// command table's categories.
func TestCategoriesMatchRedis(t *testing.T) {
	got := config.RedisCategories()
	if got[0] != "@all" || !slices.Equal(got[1:], redis.CategoryNames()) {
		t.Errorf("config.RedisCategories = %q\nredis.CategoryNames = %q", got, redis.CategoryNames())
	}
}

// command builds the RedisCommand of args from the real command table, as
// the Redis frontend does: name, categories and every key position.
func command(args ...string) policy.RedisCommand {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	c := redis.Lookup(bs)
	if c == nil {
		return policy.RedisCommand{Name: strings.ToLower(args[0])}
	}
	cmd := policy.RedisCommand{Name: c.Name, Categories: c.Categories.Names(), Keys: c.Keys(bs, nil)}
	if c.Name == "sort" || c.Name == "sort_ro" {
		for _, a := range bs[2:] {
			if bytes.EqualFold(a, []byte("by")) || bytes.EqualFold(a, []byte("get")) {
				cmd.UndeclaredKeys = true
			}
		}
	}
	return cmd
}

// TestRedisCommandTable runs a bypass corpus, with the keys the command
// table finds, against a read-only principal limited to report:* keys.
func TestRedisCommandTable(t *testing.T) {
	eng, err := policy.Compile(config.Policy{
		Default: "deny",
		Rules: []config.Rule{{
			Name:  "reporting",
			When:  config.Match{Principal: "spiffe://example.org/ns/prod/sa/reporting"},
			Redis: &config.RedisRule{Categories: []string{"@read"}, Keys: []string{"report:*"}},
		}, {
			Name:  "app",
			When:  config.Match{User: "app"},
			Redis: &config.RedisRule{Categories: []string{"@read", "@write", "@scripting"}, Keys: []string{"app:*"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ro := eng.Session(policy.Principal{Identity: "spiffe://example.org/ns/prod/sa/reporting", User: "default"})
	app := eng.Session(policy.Principal{User: "app"})
	tests := []struct {
		s     *policy.Session
		args  []string
		allow bool
	}{
		{ro, []string{"GET", "report:1"}, true},
		{ro, []string{"get", "report:1"}, true},
		{ro, []string{"GeT", "secret"}, false},
		{ro, []string{"MGET", "report:1", "report:2", "secret"}, false},
		{ro, []string{"HGETALL", "report:h"}, true},
		{ro, []string{"SET", "report:1", "x"}, false},
		{ro, []string{"MSET", "report:1", "x", "report:2", "y"}, false},
		{ro, []string{"DEL", "report:1"}, false},
		{ro, []string{"FLUSHALL"}, false},
		{ro, []string{"CONFIG", "SET", "dir", "/tmp"}, false},
		{ro, []string{"CONFIG", "GET", "dir"}, false},
		{ro, []string{"EVAL", "return redis.call('get', KEYS[1])", "1", "report:1"}, false},
		{ro, []string{"EVAL_RO", "return 1", "1", "report:1"}, false},
		{ro, []string{"FCALL_RO", "f", "1", "report:1"}, false},
		{ro, []string{"SORT_RO", "report:list", "BY", "secret:*"}, false},
		{ro, []string{"SORT_RO", "report:list"}, true},
		{ro, []string{"XREAD", "STREAMS", "report:s", "secret:s", "0", "0"}, false},
		{ro, []string{"XREAD", "STREAMS", "report:s", "report:t", "0", "0"}, true},
		{ro, []string{"ZUNION", "2", "report:a", "secret:b"}, false},
		{ro, []string{"SUNION", "report:a", "secret:b"}, false},
		{ro, []string{"SINTERCARD", "2", "report:a", "report:b"}, true},
		{ro, []string{"LCS", "report:a", "secret:b"}, false},
		{ro, []string{"OBJECT", "ENCODING", "secret:a"}, false},
		{ro, []string{"COPY", "report:a", "report:b"}, false},
		{ro, []string{"CLIENT", "KILL", "ID", "1"}, false},
		{ro, []string{"KEYS", "*"}, true}, // @read, key-less: as in Redis's ACL; refuse by category if it matters
		{ro, []string{"MULTI"}, true},
		{ro, []string{"EXEC"}, true},
		{app, []string{"MSET", "app:1", "x", "app:2", "y"}, true},
		{app, []string{"MSET", "app:1", "x", "secret", "y"}, false},
		{app, []string{"MSET", "app:1", "secret", "app:2", "y"}, true},             // values are not keys
		{app, []string{"EVAL", "return 1", "2", "app:a", "app:b", "secret"}, true}, // args after numkeys are not keys
		{app, []string{"EVAL", "return 1", "2", "app:a", "secret", "app:b"}, false},
		{app, []string{"FCALL", "f", "1", "secret"}, false},
		{app, []string{"SORT", "app:l", "STORE", "secret"}, false},
		{app, []string{"SORT", "app:l", "STORE", "app:out"}, true},
		{app, []string{"SORT", "app:l", "GET", "secret:*"}, false},
		{app, []string{"BITOP", "AND", "app:dst", "app:a", "secret"}, false},
		{app, []string{"RENAME", "app:a", "secret"}, false},
		{app, []string{"MIGRATE", "h", "6379", "", "0", "1", "KEYS", "app:a", "secret"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			d := tt.s.CheckRedis(context.Background(), command(tt.args...))
			if (d.Action == policy.Allow) != tt.allow {
				t.Errorf("%+v, want allow=%v", d, tt.allow)
			}
		})
	}
}
