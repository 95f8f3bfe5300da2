package policy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
)

const pgRules = `
policy:
  default: deny
  rules:
    - name: reader
      when: {user: reader}
      postgres: {statements: [select], tables: ["public.orders", "customers"]}
    - name: select-only
      when: {user: selector}
      postgres: {statements: [select]}
    - name: writer
      when: {user: writer}
      postgres: {statements: [select, insert, update, delete, copy_from]}
    - name: funcs
      when: {user: funcs}
      postgres: {functions: [count, lower, "pg_catalog.*", "app.*"]}
    - name: tolerant
      when: {user: tolerant}
      postgres: {statements: [select], on_parse_error: allow}
    - name: schemas
      when: {user: schemas}
      postgres: {tables: ["*.orders", "pg_stat_*", "sales.q*", '"My.Schema".t', "public.*"]}
    - name: ddl
      when: {user: ddl}
      postgres: {statements: [ddl, select]}
    - name: explainer
      when: {user: explainer}
      postgres: {statements: [explain, select]}
`

func TestPostgres(t *testing.T) {
	eng := load(t, pgRules)
	tests := []struct {
		user, sql string
		allow     bool
		why       string // part of the message, for a refusal
	}{
		// Kinds, and writes hidden in a statement that looks like a read.
		{"selector", "SELECT * FROM t", true, ""},
		{"selector", "select 1; SELECT 2", true, ""},
		{"selector", "VALUES (1)", true, ""},
		{"selector", "TABLE t", true, ""},
		{"selector", "DELETE FROM t", false, "statement kind delete"},
		{"selector", "SELECT 1; DELETE FROM t", false, "delete"},
		{"selector", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false, "delete"},
		{"selector", "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", false, "insert"},
		{"selector", "SELECT * FROM (SELECT 1) s, LATERAL (SELECT 2) l", true, ""},
		{"selector", "EXPLAIN ANALYZE DELETE FROM t", false, "delete"},
		{"selector", "EXPLAIN DELETE FROM t", false, "explain"},
		{"explainer", "EXPLAIN DELETE FROM t", true, ""}, // plain EXPLAIN does not run it
		{"explainer", "EXPLAIN (ANALYZE) DELETE FROM t", false, "delete"},
		{"explainer", "EXPLAIN (ANALYZE true) UPDATE t SET a = 1", false, "update"},
		{"selector", "COPY t FROM STDIN", false, "copy_from"},
		{"selector", "COPY t TO STDOUT", false, "copy_to"},
		{"selector", "SELECT 1 INTO t2", false, "ddl"},
		{"selector", "CREATE TABLE t2 AS SELECT 1", false, "ddl"},
		{"ddl", "CREATE TABLE t2 AS SELECT 1", true, ""},
		{"selector", "DO $$ BEGIN DELETE FROM t; END $$", false, "do"},
		{"selector", "SELECT set_config('search_path', 'evil', false)", false, "set"},
		{"selector", "SET search_path = evil", false, "set"},
		{"selector", "PREPARE p AS DELETE FROM t", false, "delete"},
		{"selector", "EXECUTE p", false, "execute"},
		{"selector", "CALL proc()", false, "call"},
		{"selector", "TRUNCATE t", false, "truncate"},
		{"selector", "LOCK TABLE t", false, "lock"},
		{"selector", "NOTIFY ch", false, "notify"},
		{"selector", "SELECT pg_notify('ch', 'x')", false, "notify"},
		{"selector", "GRANT ALL ON t TO public", false, "dcl"},
		{"selector", "DECLARE c CURSOR FOR SELECT 1", false, "cursor"},
		{"selector", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", false, "merge"},
		// A read-only rule also refuses what classify does not find ReadOnly.
		{"selector", "SELECT nextval('s')", false, "may write"},
		{"selector", "SELECT setval('s', 1)", false, "may write"},
		{"selector", "SELECT pg_advisory_lock(1)", false, "may write"},
		{"selector", "SELECT * FROM t FOR UPDATE", false, "may write"},
		{"selector", "SELECT lo_unlink(1)", false, "may write"},
		{"writer", "SELECT nextval('s')", true, ""}, // a rule that may write
		{"writer", "SELECT * FROM t FOR UPDATE", true, ""},
		// Transaction control is always allowed, alone or around allowed work.
		{"selector", "BEGIN; SELECT 1; COMMIT", true, ""},
		{"selector", "BEGIN ISOLATION LEVEL SERIALIZABLE", true, ""},
		{"selector", "SAVEPOINT s1", true, ""},
		{"selector", "BEGIN; DELETE FROM t; COMMIT", false, "delete"},
		{"selector", "PREPARE TRANSACTION 'x'", false, "may write"}, // two-phase commit is a write
		{"selector", "COMMIT PREPARED 'x'", false, "may write"},
		{"writer", "COMMIT PREPARED 'x'", true, ""},
		// Case, comments and whitespace change nothing.
		{"selector", "/* SELECT */ dElEtE FROM t -- SELECT", false, "delete"},
		{"selector", "SeLeCt/**/1", true, ""},
		// Parse errors: fail closed, unless on_parse_error: allow.
		{"selector", "SELEC 1", false, "parser rejects"},
		{"selector", "SELECT 1; DELET FROM t", false, "parser rejects"},
		{"selector", "SELECT 'a\x00' ", false, "parser rejects"},
		{"tolerant", "SELEC 1", true, ""},
		{"tolerant", "DELETE FROM t", false, "delete"},
		{"funcs", "SELEC 1", false, "parser rejects"}, // restricting only functions is restricting
		// An empty text has nothing to refuse.
		{"selector", "", true, ""},
		{"selector", " ; ", true, ""},
		// Tables: every table anywhere, unqualified names in public.
		{"reader", "SELECT * FROM orders", true, ""},
		{"reader", "SELECT * FROM public.orders", true, ""},
		{"reader", "SELECT * FROM PUBLIC.ORDERS", true, ""}, // folded to lower case
		{"reader", `SELECT * FROM "Orders"`, false, "table Orders"},
		{"reader", "SELECT * FROM customers", true, ""},
		{"reader", "SELECT * FROM public.customers", true, ""}, // pattern "customers" is public.customers
		{"reader", "SELECT * FROM other.orders", false, "table other.orders"},
		{"reader", "SELECT * FROM orders o JOIN secrets s ON true", false, "table secrets"},
		{"reader", "SELECT * FROM orders WHERE id IN (SELECT id FROM secrets)", false, "table secrets"},
		{"reader", "WITH s AS (SELECT * FROM secrets) SELECT * FROM s", false, "table secrets"},
		{"reader", "WITH orders AS (SELECT 1) SELECT * FROM orders", true, ""}, // the CTE, not a table
		{"reader", "SELECT (SELECT max(x) FROM secrets) FROM orders", false, "table secrets"},
		{"reader", "SELECT * FROM pg_authid", false, "table pg_authid"},
		{"reader", "SELECT * FROM pg_catalog.pg_authid", false, "table pg_catalog.pg_authid"},
		{"reader", "SELECT * FROM orders; SELECT * FROM secrets", false, "table secrets"},
		{"reader", "SELECT * FROM mydb.public.orders", false, "table mydb.public.orders"},
		// Table patterns per schema.
		{"schemas", "SELECT * FROM orders", true, ""},
		{"schemas", "SELECT * FROM sales.orders", true, ""},
		{"schemas", "SELECT * FROM pg_stat_activity", true, ""}, // pg_catalog.pg_stat_activity
		{"schemas", "SELECT * FROM pg_catalog.pg_stat_activity", true, ""},
		{"schemas", "SELECT * FROM pg_authid", false, "pg_authid"}, // "public.*" is not pg_catalog
		{"schemas", "SELECT * FROM sales.q1", true, ""},
		{"schemas", "SELECT * FROM sales.x", false, "sales.x"},
		{"schemas", "SELECT * FROM anything", true, ""}, // public.*
		{"schemas", `SELECT * FROM "My.Schema".t`, true, ""},
		{"schemas", `SELECT * FROM "My.Schema".u`, false, `"My.Schema".u`},
		{"schemas", "SELECT * FROM hr.salaries", false, "hr.salaries"},
		// Functions, matched as written.
		{"funcs", "SELECT count(*), lower(name) FROM t", true, ""},
		{"funcs", "SELECT pg_catalog.lower(name) FROM t", true, ""},
		{"funcs", "SELECT extract(year FROM now())", false, "function now"},
		{"funcs", "SELECT extract(year FROM d) FROM t", true, ""}, // pg_catalog.extract
		{"funcs", "SELECT pg_read_file('/etc/passwd')", false, "function pg_read_file"},
		{"funcs", "SELECT * FROM app.report(1)", true, ""},
		{"funcs", "SELECT * FROM evil.report(1)", false, "function evil.report"},
		{"funcs", "SELECT * FROM t WHERE x = (SELECT upper('a'))", false, "function upper"},
		{"funcs", "CALL app.refresh()", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.user+": "+tt.sql, func(t *testing.T) {
			d := sql(t, eng.Session(Principal{User: tt.user}), tt.sql)
			if (d.Action == Allow) != tt.allow {
				t.Fatalf("decision = %+v, want allow=%v", d, tt.allow)
			}
			if !tt.allow {
				if d.Rule != tt.user && !(d.Rule == "reader" || d.Rule == "select-only") {
					t.Errorf("rule = %s", d.Rule)
				}
				if !strings.Contains(d.Message, tt.why) {
					t.Errorf("message %q lacks %q", d.Message, tt.why)
				}
			}
		})
	}
}

// A nil classification (a frontend bug) is refused under any postgres
// section.
func TestPostgresNilResult(t *testing.T) {
	eng := load(t, pgRules)
	if d := eng.Session(Principal{User: "writer"}).CheckPostgres(bg, nil); d.Action != Deny {
		t.Errorf("nil result = %+v", d)
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"t", []string{"t"}},
		{"public.t", []string{"public", "t"}},
		{"db.public.t", []string{"db", "public", "t"}},
		{`"My.Schema".t`, []string{`"My.Schema"`, "t"}},
		{`"a""b.c".t`, []string{`"a""b.c"`, "t"}},
		{`s."x.y"`, []string{"s", `"x.y"`}},
		{"a.b.c.d", nil}, // too many parts
	}
	for _, tt := range tests {
		np := splitName(tt.in)
		if tt.want == nil {
			if np.n <= maxNameParts {
				t.Errorf("%q: %d parts, want too many", tt.in, np.n)
			}
			continue
		}
		if got := np.p[:np.n]; !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestObjectSet(t *testing.T) {
	tests := []struct {
		tables bool
		pats   []string
		name   string
		want   bool
	}{
		{true, []string{"public.orders"}, "orders", true},
		{true, []string{"orders"}, "public.orders", true},
		{true, []string{"orders"}, "orders", true},
		{true, []string{"orders"}, "sales.orders", false},
		{true, []string{"*"}, "a.b.c", true},
		{true, []string{"*"}, "pg_authid", true},
		{true, []string{"*.*"}, "pg_authid", true},
		{true, []string{"public.*"}, "pg_class", false},
		{true, []string{"pg_class"}, "pg_catalog.pg_class", true},
		{true, []string{"pg_catalog.pg_class"}, "pg_class", true},
		{true, []string{"*.orders"}, "orders", true},
		{true, []string{"s.o*"}, "s.orders", true},
		{true, []string{"s.o*"}, "s.x", false},
		{true, []string{"*.*.t"}, "db.s.t", true},
		{true, []string{"*.*.t"}, "s.t", false},
		{false, []string{"lower"}, "lower", true},
		{false, []string{"lower"}, "pg_catalog.lower", false},
		{false, []string{"pg_catalog.lower"}, "lower", false},
		{false, []string{"pg_catalog.*"}, "pg_catalog.extract", true},
		{false, []string{"*"}, "anything.at.all", true},
		{false, []string{"app_*"}, "app_report", true},
	}
	for _, tt := range tests {
		s, err := compileObjects(tt.pats, tt.tables)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.allows(tt.name); got != tt.want {
			t.Errorf("tables=%v %q allows %q = %v, want %v", tt.tables, tt.pats, tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"a.b.c.d", "a..b", ".a", "a.[", ""} {
		if _, err := compileObjects([]string{bad}, true); err == nil {
			t.Errorf("compileObjects(%q) accepted it", bad)
		}
	}
}

// TestKindsMatchClassify keeps knownKinds and config.StatementKinds equal to
// the Kind constants that pg/classify declares, so that a new kind cannot
// be missing from rules.
func TestKindsMatchClassify(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../pg/classify/kind.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || vs.Type == nil || len(vs.Values) != 1 {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
			s, _ := strconv.Unquote(lit.Value)
			declared = append(declared, s)
		}
		return true
	})
	slices.Sort(declared)
	var known []string
	for _, k := range knownKinds {
		known = append(known, string(k))
	}
	slices.Sort(known)
	if len(declared) < 20 || !slices.Equal(declared, known) {
		t.Errorf("classify declares %q\npolicy knows %q", declared, known)
	}
	if cfg := config.StatementKinds(); !slices.Equal(cfg, declared) {
		t.Errorf("config.StatementKinds = %q\nclassify declares %q", cfg, declared)
	}
	for _, k := range readOnlyKinds {
		if !slices.Contains(knownKinds, k) {
			t.Errorf("read-only kind %s unknown", k)
		}
	}
	_ = classify.KindSelect
}
