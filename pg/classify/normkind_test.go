package classify

import "testing"

// TestKindsSurviveNormalize: the access log classifies a statement's
// normalised text (which repeats across executions, so the cache finds
// it) in place of the text itself, falling back to the text when the
// normalised one does not parse. That is only right if replacing literals
// with placeholders never changes a statement's kinds.
func TestKindsSurviveNormalize(t *testing.T) {
	checked := 0
	for _, sql := range corpus() {
		orig := Classify(sql)
		norm := normalize(sql)
		if orig.Err != nil || norm == Unparsable {
			continue
		}
		res := Classify(norm)
		if res.Err != nil {
			continue // the caller falls back to sql
		}
		checked++
		if len(res.Statements) != len(orig.Statements) {
			t.Errorf("%q: %d statements, normalised %q: %d", sql, len(orig.Statements), norm, len(res.Statements))
			continue
		}
		for i := range res.Statements {
			if res.Statements[i].Kind != orig.Statements[i].Kind {
				t.Errorf("%q: statement %d is %s, normalised %q: %s", sql, i, orig.Statements[i].Kind, norm, res.Statements[i].Kind)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d texts checked", checked)
	}
}
