package classify

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pganalyze/pg_query_go/v6/parser"
)

func pin(r PinReason) Effect { return Effect{Kind: EffectPin, Reason: r} }
func set(name, sql string) Effect {
	return Effect{Kind: EffectSet, Name: name, SQL: sql}
}
func reset(name, sql string) Effect {
	return Effect{Kind: EffectReset, Name: name, SQL: sql}
}

var (
	resetAll      = Effect{Kind: EffectResetAll, SQL: "RESET ALL"}
	discardAll    = Effect{Kind: EffectDiscardAll, SQL: "DISCARD ALL"}
	deallocateAll = Effect{Kind: EffectDeallocateAll, SQL: "DEALLOCATE ALL"}
	none          = []string{}
)

// classifyTests are single-statement cases. kinds nil means exactly
// []Kind{kind}; tables and funcs nil mean "not checked" (none means empty);
// ro is "ro", "rw" or "" (not checked); tx is "", "begin", "end" or "both";
// effects are always checked.
var classifyTests = []struct {
	name    string
	sql     string
	kind    Kind
	kinds   []Kind
	tables  []string
	funcs   []string
	ro      string
	tx      string
	effects []Effect
}{
	// Every Kind.
	{name: "select", sql: "SELECT abalance FROM pgbench_accounts WHERE aid = 42", kind: KindSelect, tables: []string{"pgbench_accounts"}, funcs: none, ro: "ro"},
	{name: "values", sql: "VALUES (1), (2)", kind: KindSelect, tables: none, ro: "ro"},
	{name: "table command", sql: "TABLE t", kind: KindSelect, tables: []string{"t"}, ro: "ro"},
	{name: "insert values", sql: "INSERT INTO t (a) VALUES (1) RETURNING a", kind: KindInsert, tables: []string{"t"}, ro: "rw"},
	{name: "insert select", sql: "INSERT INTO t SELECT * FROM s", kind: KindInsert, kinds: []Kind{KindInsert, KindSelect}, tables: []string{"s", "t"}},
	{name: "insert values subquery", sql: "INSERT INTO t VALUES ((SELECT max(a) FROM s))", kind: KindInsert, kinds: []Kind{KindInsert, KindSelect}, tables: []string{"s", "t"}, funcs: []string{"max"}},
	{name: "insert on conflict", sql: "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b", kind: KindInsert, tables: []string{"t"}},
	{name: "update", sql: "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 7", kind: KindUpdate, tables: []string{"pgbench_accounts"}, ro: "rw"},
	{name: "update from", sql: "UPDATE t SET a = s.a FROM s JOIN u ON s.id = u.id WHERE t.id = s.id", kind: KindUpdate, tables: []string{"s", "t", "u"}},
	{name: "delete using", sql: "DELETE FROM t USING s WHERE t.id = s.id AND t.x IN (SELECT x FROM r)", kind: KindDelete, kinds: []Kind{KindDelete, KindSelect}, tables: []string{"r", "s", "t"}},
	{name: "merge", sql: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)", kind: KindMerge, tables: []string{"s", "t"}, ro: "rw"},
	{name: "copy from stdin", sql: "COPY t FROM STDIN", kind: KindCopyFrom, tables: []string{"t"}, ro: "rw"},
	{name: "copy to stdout", sql: "COPY public.t (a, b) TO STDOUT WITH (FORMAT csv)", kind: KindCopyTo, tables: []string{"public.t"}, ro: "ro"},
	{name: "copy query to stdout", sql: "COPY (SELECT * FROM t JOIN s USING (id)) TO STDOUT", kind: KindCopyTo, kinds: []Kind{KindCopyTo, KindSelect}, tables: []string{"s", "t"}, ro: "ro"},
	{name: "copy to server file", sql: "COPY t TO '/tmp/t.csv'", kind: KindCopyTo, tables: []string{"t"}, ro: "rw"},
	{name: "copy to program", sql: "COPY t TO PROGRAM 'gzip > /tmp/t.gz'", kind: KindCopyTo, ro: "rw"},
	{name: "copy insert returning", sql: "COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", kind: KindCopyTo, kinds: []Kind{KindCopyTo, KindInsert}, tables: []string{"t"}, ro: "rw"},
	{name: "create table", sql: "CREATE TABLE s.t (id int PRIMARY KEY REFERENCES s.parent (id), v text DEFAULT now())", kind: KindDDL, tables: []string{"s.parent", "s.t"}, funcs: []string{"now"}, ro: "rw"},
	{name: "alter table", sql: "ALTER TABLE t ADD COLUMN c int", kind: KindDDL, tables: []string{"t"}},
	{name: "drop tables", sql: `DROP TABLE a, s.b, "C"`, kind: KindDDL, tables: []string{"C", "a", "s.b"}},
	{name: "drop function", sql: "DROP FUNCTION f(int)", kind: KindDDL, tables: none, funcs: none},
	{name: "create index", sql: "CREATE INDEX CONCURRENTLY i ON t (lower(name))", kind: KindDDL, tables: []string{"t"}, funcs: []string{"lower"}},
	{name: "comment on column", sql: "COMMENT ON COLUMN s.t.c IS 'x'", kind: KindDDL, tables: []string{"s.t"}},
	{name: "create view", sql: "CREATE VIEW v AS SELECT * FROM t WHERE x IN (SELECT x FROM s)", kind: KindDDL, tables: []string{"s", "t", "v"}, ro: "rw"},
	{name: "create rule", sql: "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM s", kind: KindDDL, tables: []string{"s", "t"}},
	{name: "create function", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END", kind: KindDDL, tables: []string{"t"}, funcs: []string{"count"}},
	{name: "create function with set", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'", kind: KindDDL},
	{name: "alter system", sql: "ALTER SYSTEM SET work_mem = '64MB'", kind: KindDDL},
	{name: "create database", sql: "CREATE DATABASE d", kind: KindDDL},
	{name: "truncate", sql: "TRUNCATE a, b RESTART IDENTITY", kind: KindTruncate, tables: []string{"a", "b"}, ro: "rw"},
	{name: "call", sql: "CALL s.proc(1, 'x')", kind: KindCall, funcs: []string{"s.proc"}, ro: "rw"},
	{name: "do plain", sql: "DO $$BEGIN PERFORM 1; END$$", kind: KindDo, ro: "rw"},
	{name: "show", sql: "SHOW search_path", kind: KindShow, ro: "ro"},
	{name: "show all", sql: "SHOW ALL", kind: KindShow, ro: "ro"},
	{name: "explain", sql: "EXPLAIN SELECT * FROM t", kind: KindExplain, tables: []string{"t"}, ro: "ro"},
	{name: "prepare", sql: "PREPARE p (int) AS SELECT * FROM t WHERE id = $1", kind: KindPrepare, kinds: []Kind{KindPrepare, KindSelect}, tables: []string{"t"}, ro: "rw", effects: []Effect{pin(PinPrepare)}},
	{name: "prepare update", sql: "PREPARE p AS UPDATE t SET a = 1", kind: KindPrepare, kinds: []Kind{KindPrepare, KindUpdate}, effects: []Effect{pin(PinPrepare)}},
	{name: "execute", sql: "EXECUTE p(1)", kind: KindExecute, ro: "rw"},
	{name: "deallocate one", sql: "DEALLOCATE p", kind: KindDeallocate},
	{name: "deallocate prepare one", sql: "DEALLOCATE PREPARE p", kind: KindDeallocate},
	{name: "listen", sql: "LISTEN chan", kind: KindListen, effects: []Effect{pin(PinListen)}},
	{name: "unlisten", sql: "UNLISTEN chan", kind: KindUnlisten},
	{name: "unlisten all", sql: "UNLISTEN *", kind: KindUnlisten},
	{name: "notify", sql: "NOTIFY chan, 'payload'", kind: KindNotify, ro: "rw"},
	{name: "pg_notify", sql: "SELECT pg_notify('chan', 'x')", kind: KindSelect, kinds: []Kind{KindNotify, KindSelect}, funcs: []string{"pg_notify"}, ro: "rw"},
	{name: "discard plans", sql: "DISCARD PLANS", kind: KindDiscard},
	{name: "discard temp", sql: "DISCARD TEMP", kind: KindDiscard},
	{name: "lock", sql: "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", kind: KindLock, tables: []string{"t"}, ro: "rw"},
	{name: "vacuum", sql: "VACUUM (ANALYZE) t, s.u", kind: KindMaintenance, tables: []string{"s.u", "t"}},
	{name: "analyze", sql: "ANALYZE t", kind: KindMaintenance, tables: []string{"t"}},
	{name: "cluster", sql: "CLUSTER t USING i", kind: KindMaintenance, tables: []string{"t"}},
	{name: "reindex", sql: "REINDEX TABLE t", kind: KindMaintenance, tables: []string{"t"}},
	{name: "checkpoint", sql: "CHECKPOINT", kind: KindMaintenance},
	{name: "refresh matview", sql: "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", kind: KindMaintenance, tables: []string{"mv"}},
	{name: "grant", sql: "GRANT SELECT, INSERT ON t, s.u TO app", kind: KindDCL, tables: []string{"s.u", "t"}},
	{name: "revoke", sql: "REVOKE ALL ON t FROM app", kind: KindDCL, tables: []string{"t"}},
	{name: "create role", sql: "CREATE ROLE app LOGIN PASSWORD 'x'", kind: KindDCL},
	{name: "alter role set", sql: "ALTER ROLE app SET search_path = a, b", kind: KindDCL},
	{name: "grant role", sql: "GRANT admin TO app", kind: KindDCL},
	{name: "declare", sql: "DECLARE c CURSOR FOR SELECT * FROM t", kind: KindCursor, kinds: []Kind{KindCursor, KindSelect}, tables: []string{"t"}, ro: "rw"},
	{name: "fetch", sql: "FETCH 10 FROM c", kind: KindCursor},
	{name: "move", sql: "MOVE NEXT IN c", kind: KindCursor},
	{name: "close", sql: "CLOSE c", kind: KindCursor},
	{name: "load", sql: "LOAD 'auto_explain'", kind: KindOther, effects: []Effect{pin(PinLoad)}},
	{name: "set constraints", sql: "SET CONSTRAINTS ALL DEFERRED", kind: KindSet},

	// Transaction control.
	{name: "begin", sql: "BEGIN", kind: KindTransaction, ro: "ro", tx: "begin"},
	{name: "begin isolation", sql: "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", kind: KindTransaction, tx: "begin"},
	{name: "start transaction", sql: "START TRANSACTION", kind: KindTransaction, tx: "begin"},
	{name: "commit", sql: "COMMIT", kind: KindTransaction, tx: "end"},
	{name: "end", sql: "END", kind: KindTransaction, tx: "end"},
	{name: "rollback", sql: "ROLLBACK", kind: KindTransaction, tx: "end"},
	{name: "abort", sql: "ABORT", kind: KindTransaction, tx: "end"},
	{name: "commit and chain", sql: "COMMIT AND CHAIN", kind: KindTransaction, tx: "both"},
	{name: "savepoint", sql: "SAVEPOINT s1", kind: KindTransaction},
	{name: "release", sql: "RELEASE SAVEPOINT s1", kind: KindTransaction},
	{name: "rollback to", sql: "ROLLBACK TO SAVEPOINT s1", kind: KindTransaction},
	{name: "prepare transaction", sql: "PREPARE TRANSACTION 'gid'", kind: KindTransaction, ro: "rw", tx: "end"},
	{name: "commit prepared", sql: "COMMIT PREPARED 'gid'", kind: KindTransaction, ro: "rw"},
	{name: "rollback prepared", sql: "ROLLBACK PREPARED 'gid'", kind: KindTransaction, ro: "rw"},

	// Hidden writes.
	{name: "data-modifying cte", sql: "WITH x AS (DELETE FROM t WHERE a < 0 RETURNING *) SELECT * FROM x", kind: KindSelect, kinds: []Kind{KindDelete, KindSelect}, tables: []string{"t"}, ro: "rw"},
	{name: "data-modifying cte insert", sql: "WITH x AS (INSERT INTO log VALUES (1) RETURNING id) UPDATE t SET a = x.id FROM x", kind: KindUpdate, kinds: []Kind{KindInsert, KindUpdate}, tables: []string{"log", "t"}},
	{name: "explain analyze delete", sql: "EXPLAIN ANALYZE DELETE FROM t", kind: KindExplain, kinds: []Kind{KindDelete, KindExplain}, tables: []string{"t"}, ro: "rw"},
	{name: "explain (analyze) delete", sql: "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", kind: KindExplain, kinds: []Kind{KindDelete, KindExplain}, ro: "rw"},
	{name: "explain (analyze true) delete", sql: "EXPLAIN (ANALYZE true) DELETE FROM t", kind: KindExplain, kinds: []Kind{KindDelete, KindExplain}, ro: "rw"},
	{name: "explain (analyze off) delete", sql: "EXPLAIN (ANALYZE off) DELETE FROM t", kind: KindExplain, tables: []string{"t"}, ro: "ro"},
	{name: "explain delete", sql: "EXPLAIN DELETE FROM t", kind: KindExplain, tables: []string{"t"}, ro: "ro"},
	{name: "explain nextval", sql: "EXPLAIN SELECT nextval('s')", kind: KindExplain, funcs: []string{"nextval"}, ro: "ro"},
	{name: "select into", sql: "SELECT a, b INTO new_t FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}, tables: []string{"new_t", "t"}, ro: "rw"},
	{name: "create table as", sql: "CREATE TABLE s.t2 AS SELECT * FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}, tables: []string{"s.t2", "t"}, ro: "rw"},
	{name: "create matview", sql: "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}, tables: []string{"mv", "t"}},
	{name: "nextval", sql: "SELECT nextval('seq')", kind: KindSelect, funcs: []string{"nextval"}, ro: "rw"},
	{name: "setval qualified", sql: "SELECT pg_catalog.setval('seq', 5)", kind: KindSelect, funcs: []string{"pg_catalog.setval"}, ro: "rw"},
	{name: "lo_import", sql: "SELECT lo_import('/etc/motd')", kind: KindSelect, ro: "rw"},
	{name: "for update", sql: "SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED", kind: KindSelect, tables: []string{"t"}, ro: "rw"},
	{name: "for share in subquery", sql: "SELECT * FROM (SELECT * FROM t FOR SHARE) s", kind: KindSelect, ro: "rw"},

	// set_config.
	{name: "set_config session", sql: "SELECT set_config('x.y', '1', false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, funcs: []string{"set_config"}, ro: "rw",
		effects: []Effect{set("x.y", "SELECT pg_catalog.set_config('x.y', '1', false)")}},
	{name: "set_config local", sql: "SELECT set_config('x.y', '1', true)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, ro: "rw"},
	{name: "set_config local string", sql: "SELECT set_config('x.y', '1', 'on')", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}},
	{name: "set_config qualified two", sql: "SELECT pg_catalog.set_config('Search_Path', 'a, \"B\"', 'f'::boolean), set_config('statement_timeout', E'5\\\\s''', false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet},
		effects: []Effect{
			set("search_path", `SELECT pg_catalog.set_config('Search_Path', 'a, "B"', false)`),
			set("statement_timeout", `SELECT pg_catalog.set_config('statement_timeout', E'5\\s''', false)`),
		}},
	{name: "set_config null value", sql: "SELECT set_config('work_mem', NULL, false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet},
		effects: []Effect{reset("work_mem", "SELECT pg_catalog.set_config('work_mem', NULL, false)")}},
	{name: "set_config null is_local", sql: "SELECT set_config('work_mem', '1MB', NULL)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet},
		effects: []Effect{set("work_mem", "SELECT pg_catalog.set_config('work_mem', '1MB', false)")}},
	{name: "set_config param", sql: "SELECT set_config('x.y', $1, false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config dynamic local", sql: "SELECT set_config('x.y', '1', $1)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config from table", sql: "SELECT set_config('x.y', '1', false) FROM t", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config in where", sql: "SELECT 1 WHERE set_config('x.y', '1', false) IS NOT NULL", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config nested", sql: "SELECT coalesce(set_config('x.y', '1', false), '')", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config in cte", sql: "WITH c AS (SELECT set_config('x.y', '1', false)) SELECT * FROM c", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, tables: none, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config user schema", sql: "SELECT myschema.set_config('x.y', '1', false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config role", sql: "SELECT set_config('role', 'admin', false)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}, effects: []Effect{pin(PinSetRole)}},
	{name: "set_config role local", sql: "SELECT set_config('role', 'admin', true)", kind: KindSelect, kinds: []Kind{KindSelect, KindSet}},
	{name: "set_config in update", sql: "UPDATE t SET a = set_config('x.y', b, false)", kind: KindUpdate, kinds: []Kind{KindSet, KindUpdate}, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set_config in plain explain", sql: "EXPLAIN SELECT set_config('x.y', '1', false)", kind: KindExplain, funcs: []string{"set_config"}, ro: "ro"},
	{name: "set_config in view", sql: "CREATE VIEW v AS SELECT set_config('x.y', '1', false)", kind: KindDDL},

	// Advisory locks.
	{name: "advisory lock", sql: "SELECT pg_advisory_lock(1)", kind: KindSelect, funcs: []string{"pg_advisory_lock"}, ro: "rw", effects: []Effect{pin(PinAdvisoryLock)}},
	{name: "advisory xact lock", sql: "SELECT pg_advisory_xact_lock(1)", kind: KindSelect, funcs: []string{"pg_advisory_xact_lock"}, ro: "rw"},
	{name: "try advisory xact lock", sql: "SELECT pg_try_advisory_xact_lock_shared(1, 2)", kind: KindSelect, ro: "rw"},
	{name: "try advisory lock shared in where", sql: "SELECT id FROM jobs WHERE pg_try_advisory_lock_shared(id) LIMIT 1", kind: KindSelect, tables: []string{"jobs"}, effects: []Effect{pin(PinAdvisoryLock)}},
	{name: "two advisory locks pin once", sql: "SELECT pg_advisory_lock(1), pg_catalog.pg_advisory_lock(2)", kind: KindSelect, funcs: []string{"pg_advisory_lock", "pg_catalog.pg_advisory_lock"}, effects: []Effect{pin(PinAdvisoryLock)}},
	{name: "advisory unlock", sql: "SELECT pg_advisory_unlock(1)", kind: KindSelect, ro: "rw"},

	// Temporary objects.
	{name: "create temp table", sql: "CREATE TEMP TABLE t()", kind: KindDDL, tables: []string{"t"}, effects: []Effect{pin(PinTempTable)}},
	{name: "create temporary table", sql: "CREATE LOCAL TEMPORARY TABLE t (a int)", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "temp on commit drop", sql: "CREATE TEMP TABLE t() ON COMMIT DROP", kind: KindDDL, tables: []string{"t"}},
	{name: "temp on commit delete rows", sql: "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "temp on commit drop like temp", sql: "CREATE TEMP TABLE t (LIKE pg_temp.u) ON COMMIT DROP", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "unlogged table", sql: "CREATE UNLOGGED TABLE t (a int)", kind: KindDDL},
	{name: "pg_temp table", sql: "CREATE TABLE pg_temp.t (a int)", kind: KindDDL, tables: []string{"pg_temp.t"}, effects: []Effect{pin(PinTempTable)}},
	{name: "temp view", sql: "CREATE TEMP VIEW v AS SELECT 1", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "view over pg_temp", sql: "CREATE VIEW v AS SELECT * FROM pg_temp.t", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "temp sequence", sql: "CREATE TEMPORARY SEQUENCE s", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "pg_temp function", sql: "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", kind: KindDDL, effects: []Effect{pin(PinTempTable)}},
	{name: "select into temp", sql: "SELECT * INTO TEMP t2 FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}, tables: []string{"t", "t2"}, effects: []Effect{pin(PinTempTable)}},
	{name: "create temp table as", sql: "CREATE TEMP TABLE t2 AS SELECT * FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}, effects: []Effect{pin(PinTempTable)}},
	{name: "create temp table as on commit drop", sql: "CREATE TEMP TABLE t2 ON COMMIT DROP AS SELECT * FROM t", kind: KindDDL, kinds: []Kind{KindDDL, KindSelect}},
	{name: "explain analyze create temp table as", sql: "EXPLAIN ANALYZE CREATE TEMP TABLE t2 AS SELECT 1", kind: KindExplain, kinds: []Kind{KindDDL, KindExplain, KindSelect}, effects: []Effect{pin(PinTempTable)}},
	{name: "explain create temp table as", sql: "EXPLAIN CREATE TEMP TABLE t2 AS SELECT 1", kind: KindExplain},
	{name: "read pg_temp", sql: "SELECT * FROM pg_temp.t", kind: KindSelect, tables: []string{"pg_temp.t"}, ro: "ro"},

	// Cursors.
	{name: "declare with hold", sql: "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", kind: KindCursor, kinds: []Kind{KindCursor, KindSelect}, effects: []Effect{pin(PinHoldCursor)}},
	{name: "declare without hold", sql: "DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1", kind: KindCursor, kinds: []Kind{KindCursor, KindSelect}},
	{name: "declare cursor with set_config", sql: "DECLARE c CURSOR FOR SELECT set_config('a.b', '1', false)", kind: KindCursor, kinds: []Kind{KindCursor, KindSelect, KindSet}, effects: []Effect{pin(PinDynamicSet)}},

	// SET and RESET.
	{name: "set", sql: "SET statement_timeout = 5000", kind: KindSet, ro: "rw", effects: []Effect{set("statement_timeout", "SET statement_timeout TO 5000")}},
	{name: "set session", sql: "SET SESSION work_mem TO '64MB'", kind: KindSet, effects: []Effect{set("work_mem", "SET work_mem TO '64MB'")}},
	{name: "set local", sql: "SET LOCAL work_mem TO '64MB'", kind: KindSet},
	{name: "set search_path", sql: `SET search_path = a, "B"`, kind: KindSet, effects: []Effect{set("search_path", `SET search_path TO 'a', 'B'`)}},
	{name: "set search_path string", sql: `SET search_path = 'a, b'`, kind: KindSet, effects: []Effect{set("search_path", `SET search_path TO 'a, b'`)}},
	{name: "set quoted dotted", sql: `SET "X.Y" = 'it''s'`, kind: KindSet, effects: []Effect{set("x.y", `SET "X"."Y" TO 'it''s'`)}},
	{name: "set custom", sql: `SET app.user_id = 42`, kind: KindSet, effects: []Effect{set("app.user_id", `SET app.user_id TO 42`)}},
	{name: "set negative float", sql: `SET x.y = -1.5`, kind: KindSet, effects: []Effect{set("x.y", `SET x.y TO -1.5`)}},
	{name: "set backslash", sql: `SET application_name = E'a\\b'`, kind: KindSet, effects: []Effect{set("application_name", `SET application_name TO E'a\\b'`)}},
	{name: "set long value", sql: "SET application_name = '" + strings.Repeat("a", 100) + "'", kind: KindSet, effects: []Effect{set("application_name", "SET application_name TO '"+strings.Repeat("a", 100)+"'")}},
	{name: "set keyword name", sql: `SET "all" = 1`, kind: KindSet, effects: []Effect{set("all", `SET "all" TO 1`)}},
	{name: "set time zone", sql: "SET TIME ZONE 'Europe/Paris'", kind: KindSet, effects: []Effect{set("timezone", "SET timezone TO 'Europe/Paris'")}},
	{name: "set time zone interval", sql: "SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE", kind: KindSet, effects: []Effect{set("timezone", "SET TIME ZONE interval '+00:00' hour to minute")}},
	{name: "set names", sql: "SET NAMES 'UTF8'", kind: KindSet, effects: []Effect{set("client_encoding", "SET client_encoding TO 'UTF8'")}},
	{name: "set schema", sql: "SET SCHEMA 'app'", kind: KindSet, effects: []Effect{set("search_path", "SET search_path TO 'app'")}},
	{name: "set to default", sql: "SET work_mem TO DEFAULT", kind: KindSet, effects: []Effect{reset("work_mem", "RESET work_mem")}},
	{name: "set time zone local", sql: "SET TIME ZONE LOCAL", kind: KindSet, effects: []Effect{reset("timezone", "RESET timezone")}},
	{name: "reset", sql: "RESET search_path", kind: KindSet, effects: []Effect{reset("search_path", "RESET search_path")}},
	{name: "reset quoted", sql: `RESET "X.Y"`, kind: KindSet, effects: []Effect{reset("x.y", `RESET "X"."Y"`)}},
	{name: "reset all", sql: "RESET ALL", kind: KindSet, effects: []Effect{resetAll}},
	{name: "set from current", sql: "SET search_path FROM CURRENT", kind: KindSet, effects: []Effect{pin(PinDynamicSet)}},
	{name: "set transaction", sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", kind: KindSet},
	{name: "set transaction_isolation", sql: "SET transaction_isolation = 'serializable'", kind: KindSet},
	{name: "set session characteristics", sql: "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY, NOT DEFERRABLE", kind: KindSet,
		effects: []Effect{
			set("default_transaction_isolation", "SET default_transaction_isolation TO 'repeatable read'"),
			set("default_transaction_read_only", "SET default_transaction_read_only TO 'on'"),
			set("default_transaction_deferrable", "SET default_transaction_deferrable TO 'off'"),
		}},
	{name: "set role", sql: "SET ROLE admin", kind: KindSet, effects: []Effect{pin(PinSetRole)}},
	{name: "set session role", sql: "SET SESSION ROLE admin", kind: KindSet, effects: []Effect{pin(PinSetRole)}},
	{name: "set local role", sql: "SET LOCAL ROLE admin", kind: KindSet},
	{name: "reset role", sql: "RESET ROLE", kind: KindSet, effects: []Effect{pin(PinSetRole)}},
	{name: "set session authorization", sql: "SET SESSION AUTHORIZATION 'bob'", kind: KindSet, effects: []Effect{pin(PinSetRole)}},
	{name: "set session authorization default", sql: "SET SESSION AUTHORIZATION DEFAULT", kind: KindSet, effects: []Effect{pin(PinSetRole)}},

	// DISCARD, DEALLOCATE.
	{name: "discard all", sql: "DISCARD ALL", kind: KindDiscard, effects: []Effect{discardAll}},
	{name: "deallocate all", sql: "DEALLOCATE ALL", kind: KindDeallocate, effects: []Effect{deallocateAll}},
	{name: "deallocate prepare all", sql: "DEALLOCATE PREPARE ALL", kind: KindDeallocate, effects: []Effect{deallocateAll}},

	// DO blocks.
	{name: "do with set", sql: "DO $$BEGIN SET search_path = x; END$$", kind: KindDo, effects: []Effect{pin(PinDoBlock)}},
	{name: "do with execute", sql: "DO LANGUAGE plpgsql $$BEGIN EXECUTE 'LIS' || 'TEN x'; END$$", kind: KindDo, effects: []Effect{pin(PinDoBlock)}},

	// Tables and functions.
	{name: "join", sql: "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN s.c ON true CROSS JOIN (d NATURAL JOIN e)", kind: KindSelect, tables: []string{"a", "b", "d", "e", "s.c"}},
	{name: "subqueries everywhere", sql: "SELECT (SELECT max(x) FROM a), y FROM b WHERE EXISTS (SELECT 1 FROM c WHERE c.id = b.id) GROUP BY y HAVING count(*) > (SELECT count(*) FROM d) ORDER BY (SELECT 1 FROM e LIMIT 1)", kind: KindSelect, tables: []string{"a", "b", "c", "d", "e"}, funcs: []string{"count", "max"}},
	{name: "cte names excluded", sql: "WITH x AS (SELECT * FROM t), y AS (SELECT * FROM x JOIN u USING (id)) SELECT * FROM y, x", kind: KindSelect, tables: []string{"t", "u"}},
	{name: "recursive cte", sql: "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", kind: KindSelect, tables: none},
	{name: "non-recursive cte self name is a table", sql: "WITH x AS (SELECT * FROM x) SELECT * FROM x", kind: KindSelect, tables: []string{"x"}},
	{name: "cte scope ends with its query", sql: "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x", kind: KindSelect, tables: []string{"x"}},
	{name: "cte visible in subquery", sql: "WITH x AS (SELECT 1 AS a) SELECT * FROM t WHERE a IN (SELECT a FROM x)", kind: KindSelect, tables: []string{"t"}},
	{name: "qualified name is never a cte", sql: "WITH x AS (SELECT 1) SELECT * FROM public.x, x", kind: KindSelect, tables: []string{"public.x"}},
	{name: "dml target named like cte", sql: "WITH t AS (SELECT 1) DELETE FROM t", kind: KindDelete, kinds: []Kind{KindDelete, KindSelect}, tables: []string{"t"}},
	{name: "cte in join arms", sql: "WITH x AS (SELECT 1 AS id) SELECT * FROM t JOIN x ON t.id = x.id JOIN (x AS x2 JOIN u ON true) ON true", kind: KindSelect, tables: []string{"t", "u"}},
	{name: "cte in tablesample", sql: "WITH x AS (SELECT 1) SELECT * FROM x TABLESAMPLE SYSTEM (1)", kind: KindSelect, tables: none},
	{name: "cte in union arms", sql: "WITH x AS (SELECT 1) SELECT * FROM x UNION SELECT * FROM y", kind: KindSelect, tables: []string{"y"}},
	{name: "quoted and qualified", sql: `SELECT * FROM "MySchema"."Orders" o JOIN Public.Items i ON o.id = i.oid JOIN "a.b" ON true JOIN db.s.t ON true`, kind: KindSelect, tables: []string{`"a.b"`, "MySchema.Orders", "db.s.t", "public.items"}},
	{name: "functions in from", sql: "SELECT * FROM generate_series(1, 3) g, LATERAL unnest(ARRAY[1]) u, ROWS FROM (pg_catalog.json_each('{}'))", kind: KindSelect, tables: none, funcs: []string{"generate_series", "pg_catalog.json_each", "unnest"}},
	{name: "functions in expressions", sql: `SELECT lower(name), "MyFunc"(1), s.f(x) FILTER (WHERE true), count(*) OVER (PARTITION BY upper(y)) FROM t`, kind: KindSelect, funcs: []string{"MyFunc", "count", "lower", "s.f", "upper"}},
	{name: "sql syntax functions", sql: "SELECT EXTRACT(year FROM now()), substring('abc' FROM 2)", kind: KindSelect, funcs: []string{"now", "pg_catalog.extract", "pg_catalog.substring"}},
	{name: "tablesample", sql: "SELECT * FROM t TABLESAMPLE SYSTEM (10)", kind: KindSelect, tables: []string{"t"}},
	{name: "update from cte", sql: "WITH c AS (SELECT id FROM src) UPDATE t SET a = 1 FROM c WHERE t.id = c.id", kind: KindUpdate, kinds: []Kind{KindSelect, KindUpdate}, tables: []string{"src", "t"}},
	{name: "merge from cte", sql: "WITH c AS (SELECT * FROM src) MERGE INTO t USING c ON t.id = c.id WHEN MATCHED THEN DELETE", kind: KindMerge, kinds: []Kind{KindMerge, KindSelect}, tables: []string{"src", "t"}},
	{name: "unicode", sql: "SELECT 'héllo wörld 🚀', \"tåble\".x FROM \"tåble\"", kind: KindSelect, tables: []string{"tåble"}},
}

func TestClassify(t *testing.T) {
	for _, tc := range classifyTests {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.sql)
			if r.Err != nil {
				t.Fatalf("Classify(%q): %v", tc.sql, r.Err)
			}
			if len(r.Statements) != 1 {
				t.Fatalf("Classify(%q): %d statements", tc.sql, len(r.Statements))
			}
			s := r.Statements[0]
			if s.Kind != tc.kind {
				t.Errorf("Kind = %q, want %q", s.Kind, tc.kind)
			}
			kinds := tc.kinds
			if kinds == nil {
				kinds = []Kind{tc.kind}
			}
			if !reflect.DeepEqual(s.Kinds, kinds) {
				t.Errorf("Kinds = %q, want %q", s.Kinds, kinds)
			}
			if tc.tables != nil && !equalStrings(s.Tables, tc.tables) {
				t.Errorf("Tables = %q, want %q", s.Tables, tc.tables)
			}
			if tc.funcs != nil && !equalStrings(s.Functions, tc.funcs) {
				t.Errorf("Functions = %q, want %q", s.Functions, tc.funcs)
			}
			switch tc.ro {
			case "ro":
				if !s.ReadOnly {
					t.Errorf("ReadOnly = false, want true")
				}
			case "rw":
				if s.ReadOnly {
					t.Errorf("ReadOnly = true, want false")
				}
			}
			wantBegin := tc.tx == "begin" || tc.tx == "both"
			wantEnd := tc.tx == "end" || tc.tx == "both"
			if s.TxBegin != wantBegin || s.TxEnd != wantEnd {
				t.Errorf("TxBegin, TxEnd = %v, %v, want %v, %v", s.TxBegin, s.TxEnd, wantBegin, wantEnd)
			}
			if !reflect.DeepEqual(s.Effects, tc.effects) && (len(s.Effects) != 0 || len(tc.effects) != 0) {
				t.Errorf("Effects = %+v, want %+v", s.Effects, tc.effects)
			}
			checkInvariants(t, tc.sql, r)
		})
	}
}

func equalStrings(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// checkInvariants checks what must hold for every classification.
func checkInvariants(t *testing.T, sql string, r *Result) {
	t.Helper()
	var ie *InternalError
	if errors.As(r.Err, &ie) {
		t.Fatalf("Classify(%q): %v", sql, r.Err)
	}
	if r.Err != nil && len(r.Statements) != 0 {
		t.Errorf("Classify(%q): error %v with %d statements", sql, r.Err, len(r.Statements))
	}
	for i, s := range r.Statements {
		if !contains(s.Kinds, s.Kind) {
			t.Errorf("Classify(%q) statement %d: Kinds %q lack Kind %q", sql, i, s.Kinds, s.Kind)
		}
		for j := 1; j < len(s.Kinds); j++ {
			if s.Kinds[j-1] >= s.Kinds[j] {
				t.Errorf("Classify(%q) statement %d: Kinds %q not sorted and unique", sql, i, s.Kinds)
			}
		}
		for _, names := range [][]string{s.Tables, s.Functions} {
			for j := 1; j < len(names); j++ {
				if names[j-1] >= names[j] {
					t.Errorf("Classify(%q) statement %d: names %q not sorted and unique", sql, i, names)
				}
			}
		}
		if len(s.Effects) > 0 && !MayAffectSession(sql) {
			t.Errorf("MayAffectSession(%q) = false, but statement %d has effects %+v", sql, i, s.Effects)
		}
		for _, e := range s.Effects {
			if (e.Kind == EffectPin) != (e.Reason != "") || (e.Kind != EffectPin && e.SQL == "") {
				t.Errorf("Classify(%q) statement %d: malformed effect %+v", sql, i, e)
			}
			if e.Kind == EffectSet || e.Kind == EffectReset {
				// The replay SQL must parse, and only SET/RESET/SELECT set_config.
				rr := Classify(e.SQL)
				if rr.Err != nil || len(rr.Statements) != 1 || len(rr.Statements[0].Effects) != 1 {
					t.Errorf("Classify(%q) statement %d: replay %q does not classify back: %+v", sql, i, e.SQL, rr)
				} else if got := rr.Statements[0].Effects[0]; got.Kind != e.Kind || got.Name != e.Name {
					t.Errorf("Classify(%q) statement %d: replay %q gives %+v, want %+v", sql, i, e.SQL, got, e)
				}
			}
		}
	}
}

func contains[T comparable](s []T, x T) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestClassifyMultiStatement(t *testing.T) {
	r := Classify("BEGIN; SET x.y = 1; SELECT * FROM t; COMMIT")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	var kinds []Kind
	for _, s := range r.Statements {
		kinds = append(kinds, s.Kind)
	}
	if want := []Kind{KindTransaction, KindSet, KindSelect, KindTransaction}; !reflect.DeepEqual(kinds, want) {
		t.Fatalf("kinds = %q, want %q", kinds, want)
	}
	if !r.Statements[0].TxBegin || !r.Statements[3].TxEnd {
		t.Errorf("TxBegin/TxEnd not set: %+v", r.Statements)
	}
	if want := []Effect{set("x.y", "SET x.y TO 1")}; !reflect.DeepEqual(r.Statements[1].Effects, want) {
		t.Errorf("effects = %+v, want %+v", r.Statements[1].Effects, want)
	}
	if r.Statements[2].Effects != nil || !reflect.DeepEqual(r.Statements[2].Tables, []string{"t"}) {
		t.Errorf("select: %+v", r.Statements[2])
	}
	// A SET that is not first is still a top-level statement.
	r = Classify("SELECT 1; /* c */ -- d\n SET work_mem = '1MB'")
	if len(r.Statements) != 2 || len(r.Statements[1].Effects) != 1 {
		t.Errorf("second-statement SET: %+v", r)
	}
}

func TestClassifyErrors(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want func(error) bool
	}{
		{"syntax", "SELEC 1", func(err error) bool { var pe *parser.Error; return errors.As(err, &pe) }},
		{"syntax in second statement", "SELECT 1; SET", func(err error) bool { var pe *parser.Error; return errors.As(err, &pe) }},
		{"unterminated", "SELECT 'abc", func(err error) bool { return err != nil }},
		{"zero byte", "SELECT 1\x00; SET role x", func(err error) bool { return errors.Is(err, ErrZeroByte) }},
		{"invalid utf8", "SELECT '\xff\xfe'", func(err error) bool { return true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.sql)
			if !tc.want(r.Err) {
				t.Errorf("Err = %v (%T)", r.Err, r.Err)
			}
			checkInvariants(t, tc.sql, r)
		})
	}
	if r := Classify(""); r.Err != nil || len(r.Statements) != 0 {
		t.Errorf("empty text: %+v", r)
	}
	if r := Classify("  -- just a comment\n;;"); r.Err != nil || len(r.Statements) != 0 {
		t.Errorf("comment only: %+v", r)
	}
}

// TestClassifyHuge checks large and deeply nested inputs: no panic, and
// either a result or a parser error.
func TestClassifyHuge(t *testing.T) {
	tests := []struct{ name, sql string }{
		{"wide in-list", "SELECT * FROM t WHERE id IN (" + strings.Repeat("1, ", 50000) + "1)"},
		{"many statements", strings.Repeat("SELECT 1 FROM t; ", 5000)},
		{"deep parens", "SELECT " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000)},
		{"deeper parens", "SELECT " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)},
		{"deep subqueries", strings.Repeat("SELECT * FROM (", 1000) + "SELECT 1" + strings.Repeat(") s", 1000)},
		{"long identifier", "SELECT * FROM " + strings.Repeat("x", 100000)},
		{"garbage", strings.Repeat("\x01\xff(;'\"$$", 1000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.sql)
			checkInvariants(t, tc.sql, r)
		})
	}
}

func TestEffectKindString(t *testing.T) {
	for k, want := range map[EffectKind]string{
		EffectSet: "set", EffectReset: "reset", EffectResetAll: "reset_all", EffectDiscardAll: "discard_all",
		EffectDeallocateAll: "deallocate_all", EffectPin: "pin", 0: "EffectKind(0)",
	} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}

// TestStatementKindsKnown checks that every statement node type of pg_query
// has a Kind other than "other" (LOAD aside), so that a new pg_query_go
// version with new statements fails here rather than classifying them as
// "other" silently.
func TestStatementKindsKnown(t *testing.T) {
	msgs := pgQueryMessages()
	for _, m := range msgs {
		name := reflect.TypeOf(m).Elem().Name()
		if !strings.HasSuffix(name, "Stmt") {
			continue
		}
		switch name {
		case "RawStmt", "ReturnStmt", "PLAssignStmt", "SetOperationStmt", "ReplicaIdentityStmt", "LoadStmt":
			continue // not statements of their own, or KindOther on purpose
		}
		k, ok := stmtKind(m)
		if !ok || k == KindOther {
			t.Errorf("%s has no Kind", name)
		}
	}
}

// TestTableCoversEverything checks that classifyTests name every Kind as a
// top-level kind, and every EffectKind and PinReason in their effects.
func TestTableCoversEverything(t *testing.T) {
	kinds := map[Kind]bool{}
	effects := map[EffectKind]bool{}
	reasons := map[PinReason]bool{}
	for _, tc := range classifyTests {
		kinds[tc.kind] = true
		for _, e := range tc.effects {
			effects[e.Kind] = true
			reasons[e.Reason] = true
		}
	}
	for _, k := range allKinds {
		if !kinds[k] {
			t.Errorf("no test has Kind %q", k)
		}
	}
	for k := EffectSet; k <= EffectPin; k++ {
		if !effects[k] {
			t.Errorf("no test has EffectKind %v", k)
		}
	}
	for _, r := range []PinReason{PinListen, PinAdvisoryLock, PinTempTable, PinHoldCursor, PinPrepare, PinSetRole, PinLoad, PinDynamicSet, PinDoBlock} {
		if !reasons[r] {
			t.Errorf("no test has PinReason %q", r)
		}
	}
	if len(allKinds) != 27 || len(kindBit) != 27 {
		t.Errorf("allKinds has %d kinds, kindBit %d", len(allKinds), len(kindBit))
	}
}
