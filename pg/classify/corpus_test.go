package classify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// corpus returns every SQL text the tests know: the unit-test table, the
// extra corpus below and the fuzz seed corpus.
func corpus() []string {
	var out []string
	for _, tc := range classifyTests {
		out = append(out, tc.sql)
	}
	out = append(out, extraCorpus...)
	files, _ := filepath.Glob("testdata/fuzz/FuzzClassify/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// go test fuzz v1 / string("...")
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[1:] {
			if s, ok := unquoteSeed(l); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func TestCorpusLoads(t *testing.T) {
	if n := len(corpus()); n < 100 {
		t.Fatalf("corpus has %d texts", n)
	}
}

// unquoteSeed reads a `string("...")` line of a fuzz corpus file.
func unquoteSeed(line string) (string, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "string(") || !strings.HasSuffix(line, ")") {
		return "", false
	}
	s, err := strconv.Unquote(line[len("string(") : len(line)-1])
	return s, err == nil
}

// pgQueryMessages returns a new, empty message of every pg_query type.
func pgQueryMessages() []any {
	var out []any
	msgs := pg.File_pg_query_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(msgs.Get(i).FullName())
		if err != nil {
			continue
		}
		out = append(out, mt.New().Interface())
	}
	return out
}

// extraCorpus is SQL the walker cross-check, the prefilter property test and
// the fuzz seeds share: real-world statements beyond the unit-test table.
var extraCorpus = []string{
	// pgbench
	"UPDATE pgbench_accounts SET abalance = abalance + -4187 WHERE aid = 90781;",
	"SELECT abalance FROM pgbench_accounts WHERE aid = 90781;",
	"UPDATE pgbench_tellers SET tbalance = tbalance + -4187 WHERE tid = 7;",
	"UPDATE pgbench_branches SET bbalance = bbalance + -4187 WHERE bid = 1;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 90781, -4187, CURRENT_TIMESTAMP);",
	"select o.n, p.oid from pg_catalog.pg_opclass o join pg_catalog.pg_namespace n on n.oid = o.opcnamespace",
	// psql \d
	`SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;`,
	// JDBC / ORMs
	"SET extra_float_digits = 3", "SET application_name = 'PostgreSQL JDBC Driver'",
	"select current_schema(), current_setting('search_path')",
	`SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."email" = $1 LIMIT $2`,
	`INSERT INTO "orders" ("user_id","total","created_at") VALUES ($1,$2,$3) RETURNING "id"`,
	"SELECT t.typname, t.oid FROM pg_type t JOIN pg_namespace ns ON (ns.oid = t.typnamespace) WHERE ns.nspname = ANY(current_schemas(true))",
	"SELECT pg_try_advisory_lock(72707369)", "SELECT pg_advisory_unlock(72707369)",
	"SELECT set_config('search_path', 'tenant_42, public', false)",
	"BEGIN READ ONLY; SELECT 1; COMMIT;", "begin; listen jobs; commit",
	"DECLARE \"c1\" SCROLL CURSOR WITH HOLD FOR SELECT * FROM big", "FETCH FORWARD 100 FROM c1",
	"CREATE TEMP TABLE IF NOT EXISTS tmp_ids (id bigint) ON COMMIT PRESERVE ROWS",
	"WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 100) SELECT sum(n) FROM t",
	"SELECT json_agg(x) FROM (SELECT id, jsonb_build_object('a', a) AS j FROM t WHERE a @> '{\"k\":1}') x",
	"SELECT * FROM JSON_TABLE('[1,2]'::jsonb, '$[*]' COLUMNS (v int PATH '$')) jt",
	"SELECT xmlelement(name foo, xmlattributes('x' AS bar))",
	"SELECT * FROM XMLTABLE('/r/x' PASSING '<r><x>1</x></r>'::xml COLUMNS v int PATH '.') x",
	"SELECT a, rank() OVER w FROM t WINDOW w AS (ORDER BY a)",
	"SELECT a FROM t GROUP BY GROUPING SETS ((a), ())",
	"INSERT INTO t (a) SELECT a FROM s ON CONFLICT DO NOTHING",
	"ALTER TABLE t ATTACH PARTITION t_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
	"CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit()",
	"CREATE POLICY p ON t USING (owner = current_user)",
	"CREATE PUBLICATION pub FOR TABLE t, s.u",
	"CREATE STATISTICS st ON a, b FROM t",
	"ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r",
	"SECURITY LABEL ON TABLE t IS 'x'",
	"COMMENT ON TRIGGER trg ON s.t IS 'x'",
	"DROP TRIGGER trg ON t", "DROP POLICY p ON s.t",
	"CREATE SCHEMA s CREATE TABLE t (a int) CREATE VIEW v AS SELECT * FROM t",
	"IMPORT FOREIGN SCHEMA r FROM SERVER srv INTO l",
	"SELECT * FROM t1 NATURAL FULL JOIN t2 USING (id) AS j",
	"SELECT U&\"\\0073et_config\"('a.b', '1', false)",
	"CREATE TABLE U&\"pg\\005ftemp\".x (a int)",
	"SET search_path TO \"$user\", public",
	"SELECT 1; SET LOCAL statement_timeout = 0; SELECT 2",
	"/* leading */ SET x.y = 1", "-- c\nRESET ALL",
	"SELECT '/*'; SET a.b = 1", "SELECT $$;$$; DISCARD ALL",
	"\v SET x.y = 2", "SET\tx.y\n=\r3",
	"PREPARE q AS INSERT INTO t VALUES ($1)", "EXECUTE q(1); DEALLOCATE q",
	"EXPLAIN (ANALYZE, FORMAT JSON) SELECT pg_advisory_lock(1)",
	"EXPLAIN ANALYZE DECLARE c CURSOR WITH HOLD FOR SELECT 1",
	"VALUES (set_config('a.b', '1', false))",
	"SELECT set_config(name => 'a.b', value => '1', is_local => false)",
	"CALL do_work(); DO 'BEGIN NULL; END'",
	"COPY t (a, b) FROM STDIN WITH (FORMAT binary) WHERE a > 0",
	"SELECT * FROM ONLY t*", "SELECT t.* FROM t AS t(a, b)",
	"SELECT ARRAY(SELECT id FROM t) || '{}'", "SELECT CASE WHEN EXISTS (SELECT FROM s) THEN 1 END",
	"SELECT * FROM t WHERE a = ANY (SELECT b FROM u) AND c < ALL (SELECT d FROM v)",
	"TRUNCATE ONLY t CASCADE", "LOCK t, s.u IN SHARE MODE NOWAIT",
	"ALTER SEQUENCE s RESTART", "ALTER INDEX i RENAME TO j", "ALTER VIEW v OWNER TO r",
	"GRANT EXECUTE ON FUNCTION f(int) TO r", "REASSIGN OWNED BY a TO b", "DROP OWNED BY a",
	"CREATE EXTENSION IF NOT EXISTS pgcrypto", "ALTER EXTENSION pgcrypto UPDATE",
	"CREATE TYPE mood AS ENUM ('sad', 'ok')", "CREATE DOMAIN d AS int CHECK (VALUE > 0)",
	"CREATE TYPE pg_temp.pair AS (a int, b int)",
	"CREATE AGGREGATE myagg (int) (sfunc = int4pl, stype = int)",
}
