package policy

import (
	"fmt"
	"strings"
)

// maxNameParts is the most parts a table or function name has:
// catalog.schema.name.
const maxNameParts = 3

// nameParts is a name split at its unquoted dots. n is the number of parts,
// or maxNameParts+1 for a name with too many (it matches only "*").
type nameParts struct {
	p [maxNameParts]string
	n int
}

// splitName splits a table or function name as package classify writes it
// ("schema.name", or "name"; a part that contains '.' or '"' is double-quoted
// with '"' doubled) at the dots outside quotes. The parts keep their quotes.
// It does not allocate.
func splitName(s string) nameParts {
	var np nameParts
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted // a doubled quote toggles twice
		case '.':
			if quoted {
				continue
			}
			if np.n == maxNameParts {
				np.n++
				return np
			}
			np.p[np.n] = s[start:i]
			np.n++
			start = i + 1
		}
	}
	if np.n == maxNameParts {
		np.n++
		return np
	}
	np.p[np.n] = s[start:]
	np.n++
	return np
}

// tableSchema is the schema that an unqualified table name resolves to with
// the default search_path: pg_catalog (searched first, implicitly) for the
// names it can hold, which all begin with "pg_", else public.
func tableSchema(name string) string {
	if strings.HasPrefix(name, "pg_") {
		return "pg_catalog"
	}
	return "public"
}

// objectPattern is one compiled entry of a rule's tables or functions: a
// glob per name part, or "*" for every name.
type objectPattern struct {
	any   bool
	parts []namePattern
}

// compileObject compiles a table pattern (tables: an unqualified pattern is
// in tableSchema's schema) or a function pattern (matched as written).
func compileObject(pat string, tables bool) (objectPattern, error) {
	if pat == "*" {
		return objectPattern{any: true}, nil
	}
	np := splitName(pat)
	if np.n > maxNameParts {
		return objectPattern{}, fmt.Errorf("bad pattern %q: more than %d dot-separated parts", pat, maxNameParts)
	}
	parts := np.p[:np.n]
	if tables && np.n == 1 {
		parts = []string{tableSchema(pat), pat}
	}
	op := objectPattern{parts: make([]namePattern, len(parts))}
	for i, p := range parts {
		if p == "" {
			return objectPattern{}, fmt.Errorf("bad pattern %q: empty name part", pat)
		}
		c, err := compileName(p)
		if err != nil {
			return objectPattern{}, fmt.Errorf("bad pattern %q: %v", pat, err)
		}
		op.parts[i] = c
	}
	return op, nil
}

// match reports whether the name np matches.
func (o *objectPattern) match(np *nameParts) bool {
	if o.any {
		return true
	}
	if np.n != len(o.parts) {
		return false
	}
	for i := range o.parts {
		if !o.parts[i].match(np.p[i]) {
			return false
		}
	}
	return true
}

// objectSet is a rule's list of table or function patterns; nil allows
// every name.
type objectSet struct {
	tables   bool
	patterns []objectPattern
}

// compileObjects compiles a list; an empty list gives nil (no restriction).
func compileObjects(pats []string, tables bool) (*objectSet, error) {
	if len(pats) == 0 {
		return nil, nil
	}
	s := &objectSet{tables: tables, patterns: make([]objectPattern, 0, len(pats))}
	for _, p := range pats {
		op, err := compileObject(p, tables)
		if err != nil {
			return nil, err
		}
		s.patterns = append(s.patterns, op)
	}
	return s, nil
}

// allows reports whether name (as package classify writes it) matches one
// of the patterns. It does not allocate.
func (s *objectSet) allows(name string) bool {
	np := splitName(name)
	if s.tables && np.n == 1 {
		np = nameParts{p: [maxNameParts]string{tableSchema(name), name}, n: 2}
	}
	for i := range s.patterns {
		if s.patterns[i].match(&np) {
			return true
		}
	}
	return false
}
