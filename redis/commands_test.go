package redis

import (
	"slices"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" for nil
	}{
		{"simple", []string{"GET", "k"}, "get"},
		{"mixed case", []string{"gEt", "k"}, "get"},
		{"unknown", []string{"NOSUCHCOMMAND"}, ""},
		{"empty name", []string{""}, ""},
		{"too long", []string{strings.Repeat("x", 200)}, ""},
		{"config get", []string{"CONFIG", "GET", "maxmemory"}, "config|get"},
		{"config set lower", []string{"config", "set", "a", "b"}, "config|set"},
		{"client setname", []string{"Client", "SetName", "x"}, "client|setname"},
		{"client no-evict", []string{"CLIENT", "NO-EVICT", "on"}, "client|no-evict"},
		{"xinfo stream", []string{"XINFO", "STREAM", "s"}, "xinfo|stream"},
		{"object encoding", []string{"OBJECT", "ENCODING", "k"}, "object|encoding"},
		{"container alone", []string{"CONFIG"}, "config"},
		{"unknown subcommand", []string{"CONFIG", "NOPE"}, "config"},
		{"no subcommands: arg ignored", []string{"SET", "get", "v"}, "set"},
		{"underscore", []string{"GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"}, "georadiusbymember_ro"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lookup(argv(tt.args...))
			switch {
			case tt.want == "" && got != nil:
				t.Fatalf("Lookup(%q) = %q, want nil", tt.args, got.Name)
			case tt.want != "" && got == nil:
				t.Fatalf("Lookup(%q) = nil, want %q", tt.args, tt.want)
			case got != nil && got.Name != tt.want:
				t.Fatalf("Lookup(%q) = %q, want %q", tt.args, got.Name, tt.want)
			}
		})
	}
	if Lookup(nil) != nil {
		t.Fatal("Lookup(nil) != nil")
	}
	if c := Lookup(argv("CONFIG")); len(c.Subcommands) == 0 {
		t.Fatal("CONFIG has no subcommands")
	}
}

func TestCommandSpotChecks(t *testing.T) {
	tests := []struct {
		args       []string
		arity      int
		flags      Flag // must all be set
		notFlags   Flag // must all be clear
		categories Category
		notCats    Category
	}{
		{[]string{"get"}, 2, FlagReadOnly | FlagFast, FlagWrite, CatRead | CatString | CatFast, CatWrite},
		{[]string{"set"}, -3, FlagWrite | FlagDenyOOM, FlagReadOnly, CatWrite | CatString | CatSlow, CatRead},
		{[]string{"del"}, -2, FlagWrite, 0, CatKeyspace | CatWrite, CatRead},
		{[]string{"mset"}, -3, FlagWrite | FlagDenyOOM, 0, CatWrite | CatString, 0},
		{[]string{"blpop"}, -3, FlagWrite | FlagBlocking, 0, CatList | CatBlocking, 0},
		{[]string{"xread"}, -4, FlagReadOnly | FlagBlocking | FlagMovableKeys, 0, CatStream | CatBlocking, 0},
		{[]string{"eval"}, -3, FlagNoScript | FlagMovableKeys, 0, CatScripting, 0},
		{[]string{"subscribe"}, -2, FlagPubSub | FlagNoScript, 0, CatPubSub, 0},
		{[]string{"multi"}, 1, FlagNoScript | FlagFast, 0, CatTransaction, 0},
		{[]string{"auth"}, -2, FlagNoAuth | FlagNoScript, 0, CatConnection, 0},
		{[]string{"flushall"}, -1, FlagWrite, 0, CatKeyspace | CatDangerous, 0},
		{[]string{"ping"}, -1, FlagFast, 0, CatConnection, 0},
		{[]string{"config", "get"}, -3, FlagAdmin | FlagNoScript, 0, CatAdmin | CatDangerous, 0},
		{[]string{"client", "setname"}, 3, FlagNoScript, 0, CatConnection, CatDangerous},
		{[]string{"client", "kill"}, -3, FlagAdmin, 0, CatAdmin | CatDangerous, 0},
		{[]string{"object", "encoding"}, 3, FlagReadOnly, 0, CatKeyspace | CatRead, 0},
		{[]string{"exec"}, 1, FlagNoScript | FlagSkipSlowlog, 0, CatTransaction, 0},
		{[]string{"pfcount"}, -2, FlagReadOnly, 0, CatHyperLogLog, 0},
		{[]string{"geoadd"}, -5, FlagWrite | FlagDenyOOM, 0, CatGeo, 0},
		{[]string{"setbit"}, 4, FlagWrite | FlagDenyOOM, 0, CatBitmap, 0},
		{[]string{"zadd"}, -4, FlagWrite | FlagFast, 0, CatSortedSet, 0},
		{[]string{"hset"}, -4, FlagWrite | FlagFast, 0, CatHash, 0},
		{[]string{"sadd"}, -3, FlagWrite | FlagFast, 0, CatSet, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := Lookup(argv(tt.args...))
			if c == nil {
				t.Fatal("not in the table")
			}
			if c.Arity != tt.arity {
				t.Errorf("Arity = %d, want %d", c.Arity, tt.arity)
			}
			if c.Flags&tt.flags != tt.flags || c.Flags&tt.notFlags != 0 {
				t.Errorf("Flags = %v, want %v set and %v clear", c.Flags, tt.flags, tt.notFlags)
			}
			if c.Categories&tt.categories != tt.categories || c.Categories&tt.notCats != 0 {
				t.Errorf("Categories = %v, want %v set and %v clear", c.Categories, tt.categories, tt.notCats)
			}
		})
	}
}

func TestCheckArity(t *testing.T) {
	get, mset := Lookup(argv("get")), Lookup(argv("mset"))
	for _, tt := range []struct {
		c    *Command
		argc int
		want bool
	}{{get, 2, true}, {get, 1, false}, {get, 3, false}, {mset, 3, true}, {mset, 5, true}, {mset, 2, false}} {
		if got := tt.c.CheckArity(tt.argc); got != tt.want {
			t.Errorf("%s.CheckArity(%d) = %v, want %v", tt.c.Name, tt.argc, got, tt.want)
		}
	}
}

// TestTableInvariants checks what Lookup and Keys rely on, for every entry.
func TestTableInvariants(t *testing.T) {
	var check func(key string, c *Command, parent *Command)
	check = func(key string, c *Command, parent *Command) {
		want := key
		if parent != nil {
			want = parent.Name + "|" + key
		}
		if c.Name != want || strings.ToLower(key) != key {
			t.Errorf("entry %q has Name %q, want %q (lower case)", key, c.Name, want)
		}
		if len(key) > maxNameLen {
			t.Errorf("%s: name longer than maxNameLen %d", c.Name, maxNameLen)
		}
		needsProc := false
		for i, ks := range c.KeySpecs {
			if ks.Begin.Type == BeginUnknown || ks.Find.Type == FindUnknown || ks.Flags&KeyIncomplete != 0 {
				needsProc = true
				continue
			}
			if ks.Find.KeyStep <= 0 {
				t.Errorf("%s: key spec %d has KeyStep %d", c.Name, i, ks.Find.KeyStep)
			}
			if ks.Find.Type == FindRange && ks.Find.Limit != 0 && ks.Find.LastKey != -1 {
				t.Errorf("%s: key spec %d has Limit with LastKey %d", c.Name, i, ks.Find.LastKey)
			}
			if ks.Begin.Type == BeginKeyword && ks.Begin.Keyword != strings.ToUpper(ks.Begin.Keyword) {
				t.Errorf("%s: keyword %q is not upper case", c.Name, ks.Begin.Keyword)
			}
		}
		if needsProc && c.keys == nil {
			t.Errorf("%s: has an unknown or incomplete key spec but no entry in keyProcs", c.Name)
		}
		for k, sc := range c.Subcommands {
			check(k, sc, c)
		}
	}
	for k, c := range commandTable {
		check(k, c, nil)
	}
	for name := range keyProcs {
		if commandTable[name] == nil {
			t.Errorf("keyProcs has %q, which the table lacks", name)
		}
	}
	if n := len(Commands()); n < 200 {
		t.Errorf("Commands() has %d entries; the table looks truncated", n)
	}
	if !slices.IsSortedFunc(Commands(), func(a, b *Command) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Commands() is not sorted")
	}
}

func TestCategories(t *testing.T) {
	names := CategoryNames()
	if len(names) != 21 || names[0] != "@keyspace" || names[len(names)-1] != "@scripting" {
		t.Fatalf("CategoryNames() = %v", names)
	}
	for _, n := range names {
		c, err := ParseCategory(n)
		if err != nil {
			t.Fatalf("ParseCategory(%q): %v", n, err)
		}
		if got := c.Names(); len(got) != 1 || got[0] != n {
			t.Errorf("ParseCategory(%q).Names() = %v", n, got)
		}
	}
	for in, want := range map[string]Category{"@read": CatRead, "read": CatRead, "@SortedSet": CatSortedSet, "@all": CatAll, "ALL": CatAll} {
		if got, err := ParseCategory(in); err != nil || got != want {
			t.Errorf("ParseCategory(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "@", "@server", "@reads", "@@read"} {
		if _, err := ParseCategory(bad); err == nil || !strings.Contains(err.Error(), "@keyspace") {
			t.Errorf("ParseCategory(%q) error = %v, want an error listing the known categories", bad, err)
		}
	}
	if got := (CatWrite | CatString).String(); got != "@write @string" {
		t.Errorf("String() = %q", got)
	}
	if got := len(CatAll.Names()); got != 21 {
		t.Errorf("CatAll has %d names", got)
	}
}

func TestFlagNames(t *testing.T) {
	for i, n := range flagNames {
		f, ok := ParseFlag(n)
		if !ok || f != Flag(1)<<i {
			t.Errorf("ParseFlag(%q) = %v, %v", n, f, ok)
		}
	}
	if got := (FlagWrite | FlagDenyOOM | FlagFast).String(); got != "write|denyoom|fast" {
		t.Errorf("String() = %q", got)
	}
	for i, n := range keyFlagNames {
		f, ok := ParseKeyFlag(n)
		if !ok || f != KeyFlag(1)<<i {
			t.Errorf("ParseKeyFlag(%q) = %v, %v", n, f, ok)
		}
	}
	if _, ok := ParseFlag("nope"); ok {
		t.Error(`ParseFlag("nope") ok`)
	}
	if got := Flag(1 << 31).Names(); len(got) != 1 || got[0] != "bit31" {
		t.Errorf("unnamed bit: %v", got)
	}
}

func TestIsBlocking(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"BLPOP", "a", "0"}, true},
		{[]string{"brpoplpush", "a", "b", "0"}, true},
		{[]string{"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"}, true},
		{[]string{"BLMPOP", "0", "1", "a", "LEFT"}, true},
		{[]string{"BZPOPMIN", "a", "0"}, true},
		{[]string{"BZMPOP", "0", "1", "a", "MIN"}, true},
		{[]string{"XREAD", "COUNT", "1", "STREAMS", "s", "0"}, false},
		{[]string{"XREAD", "BLOCK", "0", "STREAMS", "s", "0"}, true},
		{[]string{"xread", "count", "5", "block", "100", "streams", "s", "$"}, true},
		{[]string{"XREAD", "STREAMS", "BLOCK", "0"}, false}, // BLOCK is a key here
		{[]string{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"}, false},
		{[]string{"XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "s", ">"}, false}, // BLOCK is the group
		{[]string{"XREADGROUP", "GROUP", "g", "c", "NOACK", "BLOCK", "10", "STREAMS", "s", ">"}, true},
		{[]string{"WAIT", "1", "0"}, true},
		{[]string{"GET", "k"}, false},
		{[]string{"SUBSCRIBE", "ch"}, false},
		{[]string{"LPOP", "k"}, false},
	}
	for _, tt := range tests {
		if got := IsBlocking(Lookup(argv(tt.args...)), argv(tt.args...)); got != tt.want {
			t.Errorf("IsBlocking(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
	if IsBlocking(nil, nil) {
		t.Error("IsBlocking(nil) = true")
	}
	// WAITAOF (Redis 7.2) is not in a 7.0 table, but a table that has it
	// must treat it as blocking.
	if IsBlocking(&Command{Name: "waitaof"}, argv("WAITAOF", "1", "0", "0")) != true {
		t.Error("WAITAOF is not blocking")
	}
}

// TestLookupKeysDoNotAllocate makes the benchmarks' zero-allocation claim a
// test.
func TestLookupKeysDoNotAllocate(t *testing.T) {
	cmds := [][][]byte{
		argv("GET", "k"),
		argv("config", "GET", "maxmemory"),
		argv("MSET", "a", "1", "b", "2", "c", "3"),
		argv("EVAL", "return 1", "2", "k1", "k2", "a"),
		argv("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "s2", ">", ">"),
		argv("SORT", "k", "BY", "w_*", "STORE", "dst"),
		argv("MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"),
		argv("ZUNIONSTORE", "dst", "2", "a", "b"),
	}
	dst := make([][]byte, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		for _, args := range cmds {
			c := Lookup(args)
			dst = c.Keys(args, dst[:0])
			_ = IsBlocking(c, args)
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup+Keys allocate %v times per run, want 0", allocs)
	}
}

func BenchmarkLookup(b *testing.B) {
	cmds := [][][]byte{argv("GET", "k"), argv("set", "k", "v"), argv("Config", "Get", "maxmemory"), argv("XINFO", "STREAM", "s")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if Lookup(cmds[i%len(cmds)]) == nil {
			b.Fatal("nil")
		}
	}
}

func BenchmarkKeys(b *testing.B) {
	for _, bc := range []struct {
		name string
		args [][]byte
	}{
		{"GET", argv("GET", "k")},
		{"MSET10", argv("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g", "7", "h", "8", "i", "9", "j", "10")},
		{"EVAL", argv("EVAL", "return 1", "2", "k1", "k2", "a")},
		{"XREAD", argv("XREAD", "COUNT", "10", "STREAMS", "s1", "s2", "0", "0")},
		{"SORT", argv("SORT", "k", "BY", "w_*", "GET", "o_*", "STORE", "dst")},
		{"MIGRATE", argv("MIGRATE", "h", "6379", "", "0", "5000", "COPY", "KEYS", "a", "b", "c")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := Lookup(bc.args)
			dst := make([][]byte, 0, 16)
			b.ReportAllocs()
			for b.Loop() {
				dst = c.Keys(bc.args, dst[:0])
			}
		})
	}
}
