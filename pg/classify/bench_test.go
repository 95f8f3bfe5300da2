package classify

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var benchSQL = []struct{ name, sql string }{
	{"pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 90781;"},
	{"pgbench_update", "UPDATE pgbench_accounts SET abalance = abalance + -4187 WHERE aid = 90781;"},
	{"big_join", `SELECT o.id, o.total, c.name, sum(li.qty * p.price) AS amount, count(DISTINCT s.id)
FROM public.orders o
JOIN public.customers c ON c.id = o.customer_id
LEFT JOIN public.line_items li ON li.order_id = o.id
LEFT JOIN public.products p ON p.id = li.product_id
LEFT JOIN shipping.shipments s ON s.order_id = o.id AND s.status = ANY ($1)
WHERE o.created_at >= now() - interval '30 days'
  AND o.region_id IN (SELECT id FROM public.regions WHERE name = $2)
  AND NOT EXISTS (SELECT 1 FROM public.refunds r WHERE r.order_id = o.id)
GROUP BY o.id, o.total, c.name
HAVING sum(li.qty) > 0
ORDER BY amount DESC
LIMIT 50`},
	{"set", "SET search_path = app, public"},
}

func BenchmarkClassify(b *testing.B) {
	for _, bc := range benchSQL {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if r := Classify(bc.sql); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// BenchmarkParse is pg_query.Parse alone, the floor under Classify.
func BenchmarkParse(b *testing.B) {
	for _, bc := range benchSQL[:3] {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := pg.Parse(bc.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWalk measures, over one parsed tree, a bare protoreflect walk
// (the generic alternative to walk_gen.go) against the whole classification
// of the tree, which walks it with the generated code.
func BenchmarkWalk(b *testing.B) {
	tree, err := pg.Parse(benchSQL[2].sql)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protoreflect", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; i < b.N; i++ {
			reflectWalk(tree.Stmts[0].Stmt.ProtoReflect(), &n)
		}
	})
	b.Run("classify_tree", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			classifyTree(tree)
		}
	})
}

func reflectWalk(m protoreflect.Message, n *int) {
	*n++
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				reflectWalk(l.Get(i).Message(), n)
			}
		case fd.Kind() == protoreflect.MessageKind:
			reflectWalk(v.Message(), n)
		}
		return true
	})
}

func BenchmarkCacheHit(b *testing.B) {
	c := NewCache(1024)
	sql := benchSQL[0].sql
	c.Classify(sql)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := c.Classify(sql); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	})
}

func BenchmarkMayAffectSession(b *testing.B) {
	for _, bc := range benchSQL {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for i := 0; i < b.N; i++ {
				MayAffectSession(bc.sql)
			}
		})
	}
}
