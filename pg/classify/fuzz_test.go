package classify

import (
	"errors"
	"testing"
)

// FuzzClassify checks, for any text: no panic, no internal error, an error
// only without statements, Kinds always holding Kind, and the prefilter
// property (any Effect implies MayAffectSession). Seeds: the unit-test table,
// the extra corpus and testdata/fuzz/FuzzClassify.
func FuzzClassify(f *testing.F) {
	for _, tc := range classifyTests {
		f.Add(tc.sql)
	}
	for _, s := range extraCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		may := MayAffectSession(sql)
		r := Classify(sql)
		var ie *InternalError
		if errors.As(r.Err, &ie) {
			t.Fatalf("Classify(%q): %v", sql, r.Err)
		}
		if r.Err != nil && len(r.Statements) != 0 {
			t.Fatalf("Classify(%q): error with statements", sql)
		}
		for i, s := range r.Statements {
			if !contains(s.Kinds, s.Kind) {
				t.Fatalf("Classify(%q) statement %d: Kinds %q lack Kind %q", sql, i, s.Kinds, s.Kind)
			}
			if len(s.Effects) > 0 && !may {
				t.Fatalf("MayAffectSession(%q) = false, but statement %d has effects %+v", sql, i, s.Effects)
			}
		}
	})
}
