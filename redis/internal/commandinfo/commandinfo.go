// Package commandinfo reads a live Redis server's command table (the reply
// to COMMAND) into plain Go values. The generator in ../gencommands turns
// them into redis/commands_gen.go, and the tests of package redis compare
// the committed table against a live server with it, so both read the reply
// the same way.
package commandinfo

import (
	"context"
	"fmt"
	"sort"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Info is one command (or subcommand) as COMMAND describes it. Names are
// lower case, as Redis reports them; a subcommand's Name is
// "container|sub" ("config|get").
type Info struct {
	Name        string
	Arity       int
	Flags       []string // "write", "readonly", "denyoom", ...
	FirstKey    int
	LastKey     int
	Step        int
	Categories  []string // "@read", "@string", ...
	KeySpecs    []KeySpec
	Subcommands []Info // sorted by Name
}

// KeySpec is one key specification (Redis 7+). BeginSearch is "index",
// "keyword" or "unknown"; FindKeys is "range", "keynum" or "unknown". Only
// the fields of the given types are meaningful.
type KeySpec struct {
	Flags []string // "RO", "RW", "OW", "RM", "access", ...

	BeginSearch string
	Index       int    // index
	Keyword     string // keyword
	StartFrom   int    // keyword

	FindKeys  string
	LastKey   int // range
	KeyStep   int // range and keynum
	Limit     int // range
	KeyNumIdx int // keynum
	FirstKey  int // keynum
}

// Fetch connects to the Redis server at addr, runs INFO server and COMMAND,
// and returns the server's version and every command sorted by name.
func Fetch(ctx context.Context, addr, username, password string) (version string, cmds []Info, err error) {
	// RESP2 keeps the reply shape simple (maps are flat arrays); parse
	// accepts RESP3 maps too.
	c := goredis.NewClient(&goredis.Options{
		Addr: addr, Username: username, Password: password,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1,
	})
	defer c.Close()

	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", nil, fmt.Errorf("commandinfo: INFO server on %s: %w", addr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	if version == "" {
		return "", nil, fmt.Errorf("commandinfo: INFO server on %s has no redis_version", addr)
	}
	reply, err := c.Do(ctx, "COMMAND").Slice()
	if err != nil {
		return "", nil, fmt.Errorf("commandinfo: COMMAND on %s: %w", addr, err)
	}
	cmds, err = Parse(reply)
	if err != nil {
		return "", nil, err
	}
	return version, cmds, nil
}

// Parse converts the decoded reply to COMMAND (as go-redis returns it, RESP2
// or RESP3) into Infos sorted by name.
func Parse(reply []any) ([]Info, error) {
	cmds := make([]Info, 0, len(reply))
	for i, v := range reply {
		ci, err := parseCommand(v)
		if err != nil {
			return nil, fmt.Errorf("commandinfo: COMMAND reply element %d: %w", i, err)
		}
		cmds = append(cmds, ci)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return cmds, nil
}

func parseCommand(v any) (Info, error) {
	a, ok := v.([]any)
	if !ok || len(a) < 7 {
		return Info{}, fmt.Errorf("want an array of at least 7 elements, got %T", v)
	}
	var ci Info
	var err error
	if ci.Name, err = str(a[0]); err != nil {
		return ci, fmt.Errorf("name: %w", err)
	}
	ci.Name = strings.ToLower(ci.Name)
	wrap := func(what string, err error) error { return fmt.Errorf("%s: %s: %w", ci.Name, what, err) }
	if ci.Arity, err = integer(a[1]); err != nil {
		return ci, wrap("arity", err)
	}
	if ci.Flags, err = strs(a[2]); err != nil {
		return ci, wrap("flags", err)
	}
	if ci.FirstKey, err = integer(a[3]); err != nil {
		return ci, wrap("first key", err)
	}
	if ci.LastKey, err = integer(a[4]); err != nil {
		return ci, wrap("last key", err)
	}
	if ci.Step, err = integer(a[5]); err != nil {
		return ci, wrap("step", err)
	}
	if ci.Categories, err = strs(a[6]); err != nil {
		return ci, wrap("categories", err)
	}
	// a[7] holds the tips (Redis 7+), which the table does not keep.
	if len(a) > 8 {
		specs, ok := a[8].([]any)
		if !ok {
			return ci, wrap("key specs", fmt.Errorf("want an array, got %T", a[8]))
		}
		for i, s := range specs {
			ks, err := parseKeySpec(s)
			if err != nil {
				return ci, wrap(fmt.Sprintf("key spec %d", i), err)
			}
			ci.KeySpecs = append(ci.KeySpecs, ks)
		}
	}
	if len(a) > 9 {
		subs, ok := a[9].([]any)
		if !ok {
			return ci, wrap("subcommands", fmt.Errorf("want an array, got %T", a[9]))
		}
		for _, s := range subs {
			sc, err := parseCommand(s)
			if err != nil {
				return ci, wrap("subcommand", err)
			}
			ci.Subcommands = append(ci.Subcommands, sc)
		}
		sort.Slice(ci.Subcommands, func(i, j int) bool { return ci.Subcommands[i].Name < ci.Subcommands[j].Name })
	}
	return ci, nil
}

func parseKeySpec(v any) (KeySpec, error) {
	var ks KeySpec
	m, err := toMap(v)
	if err != nil {
		return ks, err
	}
	if f, ok := m["flags"]; ok {
		if ks.Flags, err = strs(f); err != nil {
			return ks, fmt.Errorf("flags: %w", err)
		}
	}
	bsType, bs, err := typedSpec(m, "begin_search")
	if err != nil {
		return ks, err
	}
	ks.BeginSearch = bsType
	switch bsType {
	case "index":
		if ks.Index, err = field(bs, "index"); err != nil {
			return ks, err
		}
	case "keyword":
		kw, ok := bs["keyword"]
		if !ok {
			return ks, fmt.Errorf("begin_search keyword: no keyword")
		}
		if ks.Keyword, err = str(kw); err != nil {
			return ks, fmt.Errorf("begin_search keyword: %w", err)
		}
		if ks.StartFrom, err = field(bs, "startfrom"); err != nil {
			return ks, err
		}
	case "unknown":
	default:
		return ks, fmt.Errorf("begin_search: unknown type %q", bsType)
	}
	fkType, fk, err := typedSpec(m, "find_keys")
	if err != nil {
		return ks, err
	}
	ks.FindKeys = fkType
	switch fkType {
	case "range":
		if ks.LastKey, err = field(fk, "lastkey"); err != nil {
			return ks, err
		}
		if ks.KeyStep, err = field(fk, "keystep"); err != nil {
			return ks, err
		}
		if ks.Limit, err = field(fk, "limit"); err != nil {
			return ks, err
		}
	case "keynum":
		if ks.KeyNumIdx, err = field(fk, "keynumidx"); err != nil {
			return ks, err
		}
		if ks.FirstKey, err = field(fk, "firstkey"); err != nil {
			return ks, err
		}
		if ks.KeyStep, err = field(fk, "keystep"); err != nil {
			return ks, err
		}
	case "unknown":
	default:
		return ks, fmt.Errorf("find_keys: unknown type %q", fkType)
	}
	return ks, nil
}

// typedSpec reads m[name], a map {type: ..., spec: {...}}.
func typedSpec(m map[string]any, name string) (string, map[string]any, error) {
	v, ok := m[name]
	if !ok {
		return "", nil, fmt.Errorf("no %s", name)
	}
	outer, err := toMap(v)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	typ, err := str(outer["type"])
	if err != nil {
		return "", nil, fmt.Errorf("%s type: %w", name, err)
	}
	spec := map[string]any{}
	if s, ok := outer["spec"]; ok && s != nil {
		if spec, err = toMap(s); err != nil {
			return "", nil, fmt.Errorf("%s spec: %w", name, err)
		}
	}
	return typ, spec, nil
}

func field(m map[string]any, name string) (int, error) {
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("no %s", name)
	}
	n, err := integer(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// toMap accepts a RESP3 map or a RESP2 flat array of key/value pairs.
func toMap(v any) (map[string]any, error) {
	out := map[string]any{}
	switch m := v.(type) {
	case map[any]any:
		for k, val := range m {
			ks, err := str(k)
			if err != nil {
				return nil, err
			}
			out[ks] = val
		}
	case map[string]any:
		for k, val := range m {
			out[k] = val
		}
	case []any:
		if len(m)%2 != 0 {
			return nil, fmt.Errorf("odd-length key/value array (%d)", len(m))
		}
		for i := 0; i < len(m); i += 2 {
			ks, err := str(m[i])
			if err != nil {
				return nil, err
			}
			out[ks] = m[i+1]
		}
	default:
		return nil, fmt.Errorf("want a map, got %T", v)
	}
	return out, nil
}

func str(v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case []byte:
		return string(s), nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

func strs(v any) ([]string, error) {
	var items []any
	switch a := v.(type) {
	case []any:
		items = a
	case map[any]bool: // a RESP3 set, as some clients decode it
		for k := range a {
			items = append(items, k)
		}
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("want an array of strings, got %T", v)
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := str(it)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func integer(v any) (int, error) {
	switch n := v.(type) {
	case int64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("want an integer, got %T", v)
}
