package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/outrigger/outrigger/config"
)

// RedisCommand is what a Redis frontend knows of one command, from its
// command table, so that this package need not import it.
type RedisCommand struct {
	// Name is the lower-case command name, "container|sub" for a
	// subcommand ("client|kill", "config|get").
	Name string
	// Categories are the command's ACL categories as the table lists them,
	// lower case with the '@': "@read", "@string", "@fast".
	Categories []string
	// Keys are the command's key arguments (every key position, as COMMAND
	// GETKEYS finds them: MSET's every other argument, EVAL's numkeys keys).
	// They are only read during the check.
	Keys [][]byte
	// UndeclaredKeys is set when the arguments make the command touch keys
	// that Keys cannot list (SORT and SORT_RO with BY or GET): a rule that
	// restricts keys refuses it, as Redis's ACL does.
	UndeclaredKeys bool
	// Enumerates is set for a command that lists the keyspace (KEYS, SCAN,
	// RANDOMKEY); Pattern is the glob it lists by (KEYS's pattern, SCAN's
	// MATCH; nil: every key). A rule that restricts keys refuses it unless
	// the pattern can only match keys the rule allows.
	Enumerates bool
	Pattern    []byte
}

// alwaysAllowedRedis are the commands every session may run, like
// transaction control on Postgres: MULTI/EXEC/DISCARD/UNWATCH (the commands
// queued inside MULTI are checked one by one as they are queued; WATCH has
// keys and is checked), and the connection handshake and liveness commands
// that touch no data. They are also exempt from rate limits.
var alwaysAllowedRedis = []string{"multi", "exec", "discard", "unwatch", "ping", "echo", "quit", "auth", "hello"}

func alwaysAllowedRedisCommand(name string) bool {
	return slices.Contains(alwaysAllowedRedis, name)
}

// redisRule is a compiled redis section of a rule.
type redisRule struct {
	// anyCommand is set when the rule lists neither commands nor
	// categories.
	anyCommand bool
	// commands are lower-case names; a container name allows its
	// subcommands.
	commands []string
	allCats  bool
	cats     []string // "@read": lower case, with the '@'
	// keys is nil when keys are not restricted.
	keys []keyPattern
}

func compileRedis(key string, c config.RedisRule) (*redisRule, error) {
	var errs []error
	r := &redisRule{anyCommand: len(c.Commands) == 0 && len(c.Categories) == 0}
	for i, name := range c.Commands {
		if name == "" {
			errs = append(errs, fmt.Errorf("%s.commands[%d]: empty", key, i))
			continue
		}
		r.commands = append(r.commands, strings.ToLower(name))
	}
	for i, cat := range c.Categories {
		n := "@" + strings.ToLower(strings.TrimPrefix(cat, "@"))
		switch {
		case n == "@all":
			r.allCats = true
		case slices.Contains(config.RedisCategories(), n):
			r.cats = append(r.cats, n)
		default:
			errs = append(errs, fmt.Errorf("%s.categories[%d]: unknown ACL category %q", key, i, cat))
		}
	}
	for _, k := range c.Keys {
		r.keys = append(r.keys, compileKey(k))
	}
	return r, errors.Join(errs...)
}

// check returns why the rule refuses cmd, or "" if it allows it. It does
// not allocate when it allows.
func (r *redisRule) check(cmd *RedisCommand) string {
	if !r.allowsCommand(cmd) {
		return "command " + printable(cmd.Name) + " is not allowed"
	}
	if r.keys == nil {
		return ""
	}
	if cmd.UndeclaredKeys {
		return "the command's arguments name keys, and the rule restricts keys"
	}
	if cmd.Enumerates && !r.allowsPattern(cmd.Pattern) {
		return "the command lists keys the rule does not allow (give a pattern within the rule's keys)"
	}
	for _, k := range cmd.Keys {
		if !r.allowsKey(k) {
			return "no permissions to access a key"
		}
	}
	return ""
}

func (r *redisRule) allowsCommand(cmd *RedisCommand) bool {
	if r.anyCommand || r.allCats || slices.Contains(r.commands, cmd.Name) {
		return true
	}
	if container, _, ok := strings.Cut(cmd.Name, "|"); ok && slices.Contains(r.commands, container) {
		return true
	}
	for _, c := range cmd.Categories {
		if slices.Contains(r.cats, c) {
			return true
		}
	}
	return false
}

func (r *redisRule) allowsKey(k []byte) bool {
	for i := range r.keys {
		if r.keys[i].match(k) {
			return true
		}
	}
	return false
}

// allowsPattern reports whether every key the Redis glob p can match is
// one the rule allows: p is a literal key the rule allows, or p starts with
// the literal prefix of a prefix* pattern of the rule (or the rule allows
// every key). Anything else may reach other keys and is refused; nil (no
// pattern) is every key.
func (r *redisRule) allowsPattern(p []byte) bool {
	if p == nil {
		return slices.ContainsFunc(r.keys, func(k keyPattern) bool { return k.kind == patAny })
	}
	lit := p
	if i := bytes.IndexAny(p, `*?[\`); i >= 0 {
		lit = p[:i]
	} else if r.allowsKey(p) {
		return true // a literal key
	}
	for _, k := range r.keys {
		switch k.kind {
		case patAny:
			return true
		case patPrefix:
			if bytes.HasPrefix(lit, []byte(k.s)) {
				return true
			}
		}
	}
	return false
}

// printable shortens a client-sent name for an error message and replaces
// the bytes that do not belong in one.
func printable(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return '?'
		}
		return r
	}, s)
}
