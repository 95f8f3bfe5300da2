package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// keyTests are commands and the keys Redis finds in them. TestKeys checks
// Keys against them; TestKeysMatchRedis checks them against COMMAND GETKEYS
// of a real server, so the expectations are Redis's, not ours.
var keyTests = []struct {
	args []string
	want []string
}{
	{[]string{"GET", "k"}, []string{"k"}},
	{[]string{"SET", "k", "v"}, []string{"k"}},
	{[]string{"SET", "k", "v", "GET"}, []string{"k"}},
	{[]string{"GETEX", "k", "PERSIST"}, []string{"k"}},
	{[]string{"MSET", "a", "1", "b", "2", "c", "3"}, []string{"a", "b", "c"}},
	{[]string{"MSETNX", "a", "1", "b", "2"}, []string{"a", "b"}},
	{[]string{"MGET", "a", "b", "c"}, []string{"a", "b", "c"}},
	{[]string{"DEL", "a", "b", "c"}, []string{"a", "b", "c"}},
	{[]string{"TOUCH", "a", "b"}, []string{"a", "b"}},
	{[]string{"WATCH", "a", "b"}, []string{"a", "b"}},
	{[]string{"EXPIRE", "k", "10"}, []string{"k"}},
	{[]string{"RENAME", "a", "b"}, []string{"a", "b"}},
	{[]string{"COPY", "a", "b", "REPLACE"}, []string{"a", "b"}},
	{[]string{"SMOVE", "a", "b", "m"}, []string{"a", "b"}},
	{[]string{"LMOVE", "a", "b", "LEFT", "RIGHT"}, []string{"a", "b"}},
	{[]string{"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"}, []string{"a", "b"}},
	{[]string{"BRPOPLPUSH", "a", "b", "0"}, []string{"a", "b"}},
	{[]string{"BLPOP", "a", "b", "c", "0"}, []string{"a", "b", "c"}},
	{[]string{"BZPOPMIN", "a", "b", "0"}, []string{"a", "b"}},
	{[]string{"LCS", "a", "b"}, []string{"a", "b"}},
	{[]string{"BITFIELD", "k", "GET", "u8", "0"}, []string{"k"}},
	{[]string{"BITOP", "AND", "d", "a", "b"}, []string{"d", "a", "b"}},
	{[]string{"PFMERGE", "d", "a", "b"}, []string{"d", "a", "b"}},
	{[]string{"SUNIONSTORE", "d", "a", "b"}, []string{"d", "a", "b"}},
	{[]string{"RESTORE", "k", "0", "payload"}, []string{"k"}},
	{[]string{"EVAL", "return 1", "2", "k1", "k2", "a1"}, []string{"k1", "k2"}},
	{[]string{"EVAL", "return 1", "0"}, nil},
	{[]string{"EVAL", "return 1", "x", "a"}, nil},  // numkeys not a number
	{[]string{"EVAL", "return 1", "3", "a"}, nil},  // numkeys past the end
	{[]string{"EVAL", "return 1", "-1", "a"}, nil}, // negative numkeys
	{[]string{"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "1", "k", "a"}, []string{"k"}},
	{[]string{"EVAL_RO", "return 1", "1", "k"}, []string{"k"}},
	{[]string{"FCALL", "f", "2", "a", "b", "x"}, []string{"a", "b"}},
	{[]string{"FCALL_RO", "f", "1", "a"}, []string{"a"}},
	{[]string{"XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"}, []string{"s1", "s2"}},
	{[]string{"XREAD", "BLOCK", "0", "STREAMS", "s", "0"}, []string{"s"}},
	{[]string{"xread", "streams", "s1", "s2", "s3", "0", "0", "0"}, []string{"s1", "s2", "s3"}},
	{[]string{"XREAD", "COUNT", "1", "STREAMS", "s"}, nil}, // no ID
	{[]string{"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s1", "s2", ">", ">"}, []string{"s1", "s2"}},
	{[]string{"XADD", "s", "*", "f", "v"}, []string{"s"}},
	{[]string{"XGROUP", "CREATE", "s", "g", "$"}, []string{"s"}},
	{[]string{"XINFO", "STREAM", "s", "FULL"}, []string{"s"}},
	{[]string{"ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"}, []string{"dst", "a", "b"}},
	{[]string{"ZUNIONSTORE", "dst", "3", "a", "b"}, nil}, // numkeys past the end drops dst too
	{[]string{"ZINTERSTORE", "dst", "1", "a"}, []string{"dst", "a"}},
	{[]string{"ZUNION", "2", "a", "b"}, []string{"a", "b"}},
	{[]string{"ZDIFF", "2", "a", "b", "WITHSCORES"}, []string{"a", "b"}},
	{[]string{"ZDIFFSTORE", "d", "2", "a", "b"}, []string{"d", "a", "b"}},
	{[]string{"ZINTERCARD", "2", "a", "b", "LIMIT", "1"}, []string{"a", "b"}},
	{[]string{"SINTERCARD", "2", "a", "b"}, []string{"a", "b"}},
	{[]string{"LMPOP", "2", "a", "b", "LEFT"}, []string{"a", "b"}},
	{[]string{"BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "2"}, []string{"a", "b"}},
	{[]string{"ZMPOP", "1", "z", "MIN"}, []string{"z"}},
	{[]string{"BZMPOP", "1", "2", "a", "b", "MAX"}, []string{"a", "b"}},
	{[]string{"SORT", "k"}, []string{"k"}},
	{[]string{"SORT", "k", "BY", "w_*", "GET", "o_*", "STORE", "dst"}, []string{"k", "dst"}},
	{[]string{"SORT", "k", "STORE", "d1", "STORE", "d2"}, []string{"k", "d2"}},
	{[]string{"SORT", "k", "LIMIT", "0", "10", "ALPHA"}, []string{"k"}},
	{[]string{"SORT", "k", "GET", "store", "ALPHA"}, []string{"k"}}, // STORE is GET's pattern
	{[]string{"SORT_RO", "k", "BY", "x"}, []string{"k"}},
	{[]string{"MIGRATE", "host", "6379", "k", "0", "5000"}, []string{"k"}},
	{[]string{"MIGRATE", "host", "6379", "", "0", "5000", "KEYS", "a", "b", "c"}, []string{"a", "b", "c"}},
	{[]string{"MIGRATE", "host", "6379", "", "0", "5000", "AUTH", "KEYS", "KEYS", "a"}, []string{"a"}},
	{[]string{"MIGRATE", "host", "6379", "", "0", "5000", "COPY", "REPLACE", "AUTH2", "u", "p", "KEYS", "a", "b"}, []string{"a", "b"}},
	{[]string{"MIGRATE", "host", "6379", "k", "0", "5000", "KEYS", "a"}, nil}, // KEYS needs an empty key
	{[]string{"OBJECT", "ENCODING", "k"}, []string{"k"}},
	{[]string{"OBJECT", "FREQ", "k"}, []string{"k"}},
	{[]string{"MEMORY", "USAGE", "k", "SAMPLES", "5"}, []string{"k"}},
	{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"}, []string{"k", "d"}},
	{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d", "STOREDIST", "e"}, []string{"k", "d", "e"}},
	{[]string{"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STOREDIST", "d"}, []string{"k", "d"}},
	{[]string{"GEOSEARCHSTORE", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km"}, []string{"dst", "src"}},
	{[]string{"PUBLISH", "ch", "m"}, nil},
	{[]string{"SPUBLISH", "ch", "m"}, nil}, // a shard channel, not a key
	{[]string{"CLIENT", "SETNAME", "x"}, nil},
	{[]string{"CONFIG", "GET", "maxmemory"}, nil},
}

func TestKeys(t *testing.T) {
	for _, tt := range keyTests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := argv(tt.args...)
			c := Lookup(args)
			if c == nil {
				t.Fatal("not in the table")
			}
			if got := strs(c.Keys(args, nil)); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Keys = %q, want %q", got, tt.want)
			}
			// Keys appends: what dst holds stays.
			pre := [][]byte{[]byte("pre")}
			if got := strs(c.Keys(args, pre)); !reflect.DeepEqual(got, append([]string{"pre"}, tt.want...)) {
				t.Fatalf("Keys with a non-empty dst = %q", got)
			}
		})
	}
	var nilCmd *Command
	if got := nilCmd.Keys(argv("GET", "k"), nil); got != nil {
		t.Fatalf("nil Command's Keys = %q", got)
	}
}

func TestKeysShortArgs(t *testing.T) {
	// Keys must cope with arguments that fail the arity check.
	for _, c := range Commands() {
		cmds := []*Command{c}
		for _, sc := range c.Subcommands {
			cmds = append(cmds, sc)
		}
		for _, cmd := range cmds {
			name := strings.Split(cmd.Name, "|")
			for n := 0; n <= 3; n++ {
				args := argv(name...)
				for range n {
					args = append(args, []byte("2"))
				}
				_ = cmd.Keys(args[:min(len(args), n+1)], nil)
				_ = cmd.Keys(args, nil)
			}
		}
	}
}

// TestKeysMatchRedis checks keyTests against COMMAND GETKEYS of a real
// server.
func TestKeysMatchRedis(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range keyTests {
		got, err := getKeys(ctx, c, tt.args)
		if err != nil {
			t.Fatalf("COMMAND GETKEYS %q: %v", tt.args, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("COMMAND GETKEYS %q = %q, but keyTests says %q", tt.args, got, tt.want)
		}
	}
}

// TestKeysMatchRedisRandom runs Keys and COMMAND GETKEYS on thousands of
// random argument lists: for every command and subcommand of the table,
// arguments of a valid count drawn from words that key specs and getkeys
// functions look for.
func TestKeysMatchRedisRandom(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	words := []string{"k1", "k2", "k3", "0", "1", "2", "3", "-1", "", "x",
		"STREAMS", "STORE", "STOREDIST", "KEYS", "BLOCK", "COUNT", "LIMIT",
		"GET", "BY", "AUTH", "AUTH2", "GROUP", "NOACK", "WEIGHTS", "streams", "keys",
		// Key counts that Redis's atoi reads and its strict parser does
		// not, and keywords that strcasecmp matches up to a NUL.
		"2x", " 1", "+2", "1 ", "4294967298", "-0", "01",
		"STORE\x00x", "streams\x00", "KEYS\x00"}
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: a failure repeats
	const perCommand = 100
	var cases [][]string
	var add func(cmd *Command)
	add = func(cmd *Command) {
		if len(cmd.Subcommands) > 0 {
			for _, sc := range cmd.Subcommands {
				add(sc)
			}
			return
		}
		name := strings.Split(cmd.Name, "|")
		n := perCommand
		if cmd.Flags&FlagMovableKeys != 0 || cmd.keys != nil {
			n *= 20 // where the keys depend on the arguments
		}
		for range n {
			argc := cmd.Arity
			if argc < 0 {
				argc = -argc + rng.IntN(7)
			}
			args := append([]string(nil), name...)
			for len(args) < argc {
				args = append(args, words[rng.IntN(len(words))])
			}
			if len(args) < 2 {
				// COMMAND GETKEYS wants an argument after the name;
				// a bare command name has no keys.
				if keys := cmd.Keys(argv(args...), nil); len(keys) > 0 {
					t.Errorf("Keys(%q) = %q, want none", args, keys)
				}
				continue
			}
			cases = append(cases, args)
		}
	}
	for _, cmd := range Commands() {
		add(cmd)
	}

	pipe := c.Pipeline()
	results := make([]*goredis.Cmd, len(cases))
	for i, args := range cases {
		results[i] = pipe.Do(ctx, getKeysArgs(args)...)
	}
	_, _ = pipe.Exec(ctx)
	mismatches, withKeys := 0, 0
	for i, args := range cases {
		want, err := getKeysResult(results[i])
		if err != nil {
			t.Fatalf("COMMAND GETKEYS %q: %v", args, err)
		}
		a := argv(args...)
		got := strs(Lookup(a).Keys(a, nil))
		if len(want) > 0 {
			withKeys++
		}
		if !reflect.DeepEqual(got, want) {
			mismatches++
			if mismatches <= 20 {
				t.Errorf("Keys(%q) = %q, COMMAND GETKEYS says %q", args, got, want)
			}
		}
	}
	t.Logf("%d random commands compared (%d with keys), %d mismatches", len(cases), withKeys, mismatches)
}

func getKeysArgs(args []string) []any {
	out := []any{"COMMAND", "GETKEYS"}
	for _, a := range args {
		out = append(out, a)
	}
	return out
}

func getKeys(ctx context.Context, c *goredis.Client, args []string) ([]string, error) {
	return getKeysResult(c.Do(ctx, getKeysArgs(args)...))
}

// getKeysResult turns a COMMAND GETKEYS reply into keys; the errors Redis
// gives for "this has no keys" are an empty list, any other error is an
// error.
func getKeysResult(cmd *goredis.Cmd) ([]string, error) {
	v, err := cmd.Result()
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "no key arguments") || strings.Contains(msg, "Invalid arguments specified") {
			return nil, nil
		}
		return nil, err
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply is %T", v)
	}
	var out []string
	for _, k := range a {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("key is %T", k)
		}
		out = append(out, s)
	}
	return out, nil
}

func strs(b [][]byte) []string {
	if len(b) == 0 {
		return nil
	}
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}
