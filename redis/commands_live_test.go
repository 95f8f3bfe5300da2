package redis

import (
	"context"
	"testing"
	"time"

	"github.com/outrigger/outrigger/redis/internal/commandinfo"
)

// TestCommandTableCoversLiveServer reads COMMAND from a real redis-server
// and fails if the committed table lacks any command or subcommand the
// server has, so the table cannot rot silently: regenerate it (see
// commands.go). When the server is the version the table was generated
// from, every field must match too.
func TestCommandTableCoversLiveServer(t *testing.T) {
	r := startRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	version, live, err := commandinfo.Fetch(ctx, r.Addr, "", "")
	if err != nil {
		t.Fatal(err)
	}
	exact := version == TableVersion
	t.Logf("live server %s, table %s: %d commands (exact comparison: %v)", version, TableVersion, len(live), exact)

	var check func(info commandinfo.Info, c *Command)
	check = func(info commandinfo.Info, c *Command) {
		if exact {
			compareEntry(t, info, c)
		}
		for _, si := range info.Subcommands {
			key := si.Name[len(info.Name)+1:]
			sc := c.Subcommands[key]
			if sc == nil {
				t.Errorf("the table lacks subcommand %q of Redis %s; regenerate commands_gen.go", si.Name, version)
				continue
			}
			check(si, sc)
		}
		if exact && len(c.Subcommands) != len(info.Subcommands) {
			t.Errorf("%s: table has %d subcommands, server %d", c.Name, len(c.Subcommands), len(info.Subcommands))
		}
	}
	for _, info := range live {
		c := commandTable[info.Name]
		if c == nil {
			t.Errorf("the table lacks command %q of Redis %s; regenerate commands_gen.go", info.Name, version)
			continue
		}
		check(info, c)
	}
	if exact && len(commandTable) != len(live) {
		t.Errorf("table has %d commands, server %d", len(commandTable), len(live))
	}
}

// compareEntry checks every field of a table entry against the server's
// description, through the package's own name tables (so it also checks
// that the generator and flags.go/category.go agree).
func compareEntry(t *testing.T, info commandinfo.Info, c *Command) {
	t.Helper()
	if c.Name != info.Name || c.Arity != info.Arity || c.FirstKey != info.FirstKey || c.LastKey != info.LastKey || c.Step != info.Step {
		t.Errorf("%s: table {%s arity %d keys %d %d %d}, server {%s arity %d keys %d %d %d}", info.Name,
			c.Name, c.Arity, c.FirstKey, c.LastKey, c.Step, info.Name, info.Arity, info.FirstKey, info.LastKey, info.Step)
	}
	var flags Flag
	for _, n := range info.Flags {
		f, ok := ParseFlag(n)
		if !ok {
			t.Errorf("%s: flag %q has no constant", info.Name, n)
		}
		flags |= f
	}
	if flags != c.Flags {
		t.Errorf("%s: table flags %v, server %v", info.Name, c.Flags, flags)
	}
	var cats Category
	for _, n := range info.Categories {
		cat, err := ParseCategory(n)
		if err != nil || cat == CatAll {
			t.Errorf("%s: category %q: %v", info.Name, n, err)
		}
		cats |= cat
	}
	if cats != c.Categories {
		t.Errorf("%s: table categories %v, server %v", info.Name, c.Categories, cats)
	}
	if len(info.KeySpecs) != len(c.KeySpecs) {
		t.Errorf("%s: table has %d key specs, server %d", info.Name, len(c.KeySpecs), len(info.KeySpecs))
		return
	}
	for i, ks := range info.KeySpecs {
		var kf KeyFlag
		for _, n := range ks.Flags {
			f, ok := ParseKeyFlag(n)
			if !ok {
				t.Errorf("%s: key-spec flag %q has no constant", info.Name, n)
			}
			kf |= f
		}
		want := KeySpec{Flags: kf}
		switch ks.BeginSearch {
		case "index":
			want.Begin = BeginSearch{Type: BeginIndex, Index: ks.Index}
		case "keyword":
			want.Begin = BeginSearch{Type: BeginKeyword, Keyword: ks.Keyword, StartFrom: ks.StartFrom}
		}
		switch ks.FindKeys {
		case "range":
			want.Find = FindKeys{Type: FindRange, LastKey: ks.LastKey, KeyStep: ks.KeyStep, Limit: ks.Limit}
		case "keynum":
			want.Find = FindKeys{Type: FindKeyNum, KeyNumIdx: ks.KeyNumIdx, FirstKey: ks.FirstKey, KeyStep: ks.KeyStep}
		}
		if got := c.KeySpecs[i]; got != want {
			t.Errorf("%s: key spec %d: table %+v, server %+v", info.Name, i, got, want)
		}
	}
}
