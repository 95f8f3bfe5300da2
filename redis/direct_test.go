package redis

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"
)

// statefulCommands must name exactly the cases of dispatch's switch: a
// case missing from it would let that command run while detached replies
// of the client are still being written (and the reader records them).
func TestStatefulCommandsMatchDispatch(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "session.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "dispatch" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok {
				return true
			}
			if id, ok := sw.Tag.(*ast.Ident); !ok || id.Name != "name" {
				return true
			}
			for _, st := range sw.Body.List {
				for _, e := range st.(*ast.CaseClause).List {
					lit, ok := e.(*ast.BasicLit)
					if !ok {
						t.Fatalf("dispatch: a case that is not a string literal: %T", e)
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					cases = append(cases, s)
				}
			}
			return false
		})
		return false
	})
	if len(cases) == 0 {
		t.Fatal("found no switch on name in dispatch")
	}
	got := slices.Clone(statefulCommands)
	slices.Sort(got)
	slices.Sort(cases)
	if !slices.Equal(got, cases) {
		t.Errorf("statefulCommands = %v\ndispatch cases   = %v", got, cases)
	}
	for _, name := range statefulCommands {
		c := commandByName(name)
		if c == nil {
			// Newer than the table's server (CLIENT SETINFO is 7.2): Lookup
			// finds no entry, so dispatch cannot reach its case either.
			continue
		}
		if !c.stateful {
			t.Errorf("%q is not marked stateful", name)
		}
	}
	if commandByName("get").stateful {
		t.Error("GET is marked stateful")
	}
}

// Every command Redis serves while a script or function holds it busy
// (allow_busy) is either one dispatch handles (connection state), the
// replication handshake, or out of band: none waits on a shared connection
// behind the script it may exist to stop.
func TestOutOfBandCommandsCoverAllowBusy(t *testing.T) {
	var busy []*Command
	for _, c := range Commands() {
		busy = append(busy, c)
		for _, sc := range c.Subcommands {
			busy = append(busy, sc)
		}
	}
	n := 0
	for _, c := range busy {
		if c.Flags&FlagAllowBusy == 0 {
			continue
		}
		n++
		if !c.stateful && !c.outOfBand && c.Name != "replconf" {
			t.Errorf("%s is allow_busy but neither stateful nor out of band", c.Name)
		}
	}
	if n < 10 {
		t.Fatalf("only %d allow_busy commands in the table", n)
	}
	for _, name := range outOfBandCommands {
		if c := commandByName(name); c == nil || !c.outOfBand {
			t.Errorf("%s is not marked out of band", name)
		}
	}
	if !commandByName("client|unpause").outOfBand || commandByName("client|pause").outOfBand {
		t.Error("CLIENT UNPAUSE must be out of band, CLIENT PAUSE not")
	}
}
