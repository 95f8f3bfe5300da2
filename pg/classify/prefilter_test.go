package classify

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestMayAffectSession(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1", false},
		{"UPDATE pgbench_accounts SET abalance = abalance + -4187 WHERE aid = 90781", false},
		{"update t\nset a = 1\nwhere b = 2", false},
		{"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 1", false},
		{"SELECT offset, dataset FROM assets", false},
		{"BEGIN; UPDATE t SET a = 1; COMMIT", false},
		{"DELETE FROM t; DROP TABLE u", false},
		{"", false},
		{"SET x = 1", true},
		{"set x = 1", true},
		{"  \t\n\v\f\rSeT x = 1", true},
		{"SELECT 1;SET x = 1", true},
		{"SELECT 1; /* a /* nested */ comment */ -- line\n SET x = 1", true},
		{"SELECT 1; /* unterminated", true},
		{"RESET ALL", true},
		{"DISCARD ALL", true},
		{"DEALLOCATE ALL", true},
		{"LISTEN c", true},
		{"LOAD 'x'", true},
		{"PREPARE p AS SELECT 1", true},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{"DO $$BEGIN END$$", true},
		{"SELECT set_config('a.b', '1', false)", true},
		{"SELECT PG_ADVISORY_LOCK(1)", true},
		{"CREATE TEMP TABLE t ()", true},
		{"SELECT * INTO TEMPORARY t FROM s", true},
		{"SELECT temperature FROM readings", true}, // conservative
		{`SELECT U&"\0073et_config"('a.b', '1', false)`, true},
		{"SELECT 'x;set'", true}, // conservative: any ';' may end a statement
	}
	for _, tc := range tests {
		if got := MayAffectSession(tc.sql); got != tc.want {
			t.Errorf("MayAffectSession(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}

// TestMayAffectSessionCorpus checks the prefilter property over every corpus
// text: any Effect from Classify implies MayAffectSession.
func TestMayAffectSessionCorpus(t *testing.T) {
	n := 0
	for _, sql := range corpus() {
		r := Classify(sql)
		checkInvariants(t, sql, r)
		for _, s := range r.Statements {
			if len(s.Effects) > 0 {
				n++
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d corpus statements have effects; the property is barely tested", n)
	}
}

// TestMayAffectSessionBounded checks that pathological comment nesting
// cannot make the scan quadratic: the budget answers true instead.
func TestMayAffectSessionBounded(t *testing.T) {
	sql := strings.Repeat(";/*", 20000) + strings.Repeat("*/", 20000)
	if !MayAffectSession(sql) {
		t.Errorf("pathological input: want true")
	}
}

func TestMayAffectSessionAllocs(t *testing.T) {
	sql := "UPDATE pgbench_accounts SET abalance = abalance + -4187 WHERE aid = 90781; SELECT 1"
	if n := testing.AllocsPerRun(100, func() { MayAffectSession(sql) }); n != 0 {
		t.Errorf("MayAffectSession allocates %v times", n)
	}
}

// TestMayAffectSessionGenerated checks the prefilter property on texts built
// from fragments that stress it: statement starts hidden behind comments,
// literals and separators, mixed with effect-bearing statements.
func TestMayAffectSessionGenerated(t *testing.T) {
	fragments := []string{
		"SET x.y = 1", "RESET ALL", "RESET work_mem", "DISCARD ALL", "DEALLOCATE ALL", "LISTEN c", "LOAD 'x'",
		"PREPARE p AS SELECT 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DO $$BEGIN SET a = 1; END$$",
		"SELECT set_config('a.b', '1', false)", "SELECT pg_advisory_lock(1)", "CREATE TEMP TABLE t ()",
		"SELECT 1", "UPDATE t SET a = 1", "BEGIN", "COMMIT", "SET LOCAL a.b = 1",
		";", ";", " ", "\n", "\t", "\v", "\r\n", "/*", "*/", "/* c */", "/* /* n */ */", "--", "-- c\n",
		"'", "''", "';'", "$$", "$q$", "\"", "E'\\''", "U&\"\\0073et\"", "(", ")", "x", "/", "*", "-",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	effects := 0
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for n := 1 + rng.IntN(8); n > 0; n-- {
			b.WriteString(fragments[rng.IntN(len(fragments))])
		}
		sql := b.String()
		r := Classify(sql)
		for _, s := range r.Statements {
			if len(s.Effects) > 0 {
				effects++
				if !MayAffectSession(sql) {
					t.Fatalf("MayAffectSession(%q) = false, but Classify gives effects %+v", sql, s.Effects)
				}
			}
		}
	}
	if effects < 1000 {
		t.Errorf("only %d generated statements had effects", effects)
	}
}
