package classify

import (
	"slices"
	"testing"
)

func TestPreparedStatementNames(t *testing.T) {
	for _, tc := range []struct {
		sql      string
		prepares string
		executes []string
	}{
		{"PREPARE p(int) AS DELETE FROM t WHERE id = $1", "p", nil},
		{`PREPARE "Mixed" AS SELECT 1`, "Mixed", nil},
		{"EXECUTE P(1)", "", []string{"p"}},
		{"explain (analyze) execute p", "", []string{"p"}},
		{"CREATE TABLE x AS EXECUTE q", "", []string{"q"}},
		{"EXPLAIN EXECUTE p", "", nil}, // planned, not run
		{"SELECT 1", "", nil},
	} {
		res := Classify(tc.sql)
		if res.Err != nil || len(res.Statements) != 1 {
			t.Fatalf("%q: %v", tc.sql, res.Err)
		}
		st := res.Statements[0]
		if st.Prepares != tc.prepares || !slices.Equal(st.Executes, tc.executes) {
			t.Errorf("%q: Prepares %q Executes %q, want %q %q", tc.sql, st.Prepares, st.Executes, tc.prepares, tc.executes)
		}
	}
}
