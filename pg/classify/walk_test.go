package classify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// reachable collects, with protoreflect, every message under m except the
// Node wrappers (the walker sees through them).
func reachable(m protoreflect.Message, out map[any]int) {
	if _, isNode := m.Interface().(*pg.Node); !isNode {
		out[m.Interface()]++
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len(); i++ {
				reachable(v.List().Get(i).Message(), out)
			}
		case fd.Kind() == protoreflect.MessageKind:
			reachable(v.Message(), out)
		}
		return true
	})
}

// TestWalkVisitsEverything checks the generated walk against protoreflect:
// every message of every corpus statement is visited exactly once.
func TestWalkVisitsEverything(t *testing.T) {
	for _, sql := range corpus() {
		tree, err := pg.Parse(sql)
		if err != nil {
			continue
		}
		for i, raw := range tree.Stmts {
			want := map[any]int{}
			reachable(raw.Stmt.ProtoReflect(), want)
			got := map[any]int{}
			w := walker{top: unwrapNode(raw.Stmt), version: tree.Version, trace: func(m any) { got[m]++ }}
			w.node(raw.Stmt)
			for m, n := range want {
				if got[m] != n {
					t.Errorf("%q stmt %d: %T visited %d times, want %d", sql, i, m, got[m], n)
				}
			}
			for m := range got {
				if want[m] == 0 {
					t.Errorf("%q stmt %d: visited %T that protoreflect does not reach", sql, i, m)
				}
			}
		}
	}
}

// TestWalkCoversEveryMessageType checks that the generated children() knows
// every message type with message fields: a message of each type, with every
// message field set, has each field visited.
func TestWalkCoversEveryMessageType(t *testing.T) {
	files := pg.File_pg_query_proto
	msgs := files.Messages()
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New()
		fields := md.Fields()
		for j := 0; j < fields.Len(); j++ {
			fd := fields.Get(j)
			if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
				continue
			}
			child := m.NewField(fd)
			if fd.IsList() {
				child.List().Append(child.List().NewElement())
			}
			m.Set(fd, child)
			if fd.ContainingOneof() != nil {
				// Only one member of a oneof can be set; check each in turn.
				checkVisited(t, m, fmt.Sprintf("%s.%s", md.Name(), fd.Name()))
				m.Clear(fd)
			}
		}
		checkVisited(t, m, string(md.Name()))
	}
}

func checkVisited(t *testing.T, m protoreflect.Message, what string) {
	t.Helper()
	want := map[any]int{}
	reachable(m, want)
	got := map[any]int{}
	w := walker{trace: func(x any) { got[x]++ }}
	if n, ok := m.Interface().(*pg.Node); ok {
		w.node(n)
	} else {
		w.visit(m.Interface())
	}
	for x, n := range want {
		if got[x] < n {
			t.Errorf("%s: %T not visited", what, x)
		}
	}
}

// TestWalkGenUpToDate regenerates walk_gen.go into a temporary file and
// compares: a pg_query_go upgrade must come with `go generate`.
func TestWalkGenUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "walk_gen.go")
	cmd := exec.Command("go", "run", "./internal/walkgen", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot run the generator: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("walk_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("walk_gen.go is stale: run go generate ./pg/classify")
	}
}
