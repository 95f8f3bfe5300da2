package classify

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Unparsable is what Normalizer.Normalize returns for text the Postgres
// parser rejects: logging the text itself could log the values in it.
const Unparsable = "<unparsable>"

// Normalizer replaces the literals of SQL text with placeholders ($1, $2,
// ...; the numbering goes on after the text's own parameters) with the
// Postgres parser's normaliser (pg_query's Normalize), for the access log
// and spans: what it returns holds no value the client sent. Results are
// kept in a bounded LRU keyed by the exact text, like Cache; texts longer
// than MaxCachedSQL are normalised on every call. It is safe for
// concurrent use; a nil *Normalizer normalises without caching. As with
// Cache, a caller must not pass a string that aliases a reused buffer.
type Normalizer struct {
	m *memo[string]
}

// NewNormalizer returns a Normalizer that keeps up to entries results (at
// least one).
func NewNormalizer(entries int) *Normalizer { return &Normalizer{m: newMemo[string](entries)} }

// Normalize returns sql with its literals replaced by placeholders
// ("SELECT * FROM t WHERE id = 42" gives "SELECT * FROM t WHERE id = $1"),
// or Unparsable when the parser rejects it. Comments are kept (a
// sqlcommenter comment among them).
func (n *Normalizer) Normalize(sql string) string {
	if n == nil {
		return normalize(sql)
	}
	return n.m.get(sql, normalize)
}

// Stats returns how many lookups found their text and how many did not.
func (n *Normalizer) Stats() (hits, misses uint64) {
	if n == nil {
		return 0, 0
	}
	return n.m.hits.Load(), n.m.misses.Load()
}

func normalize(sql string) string {
	for i := 0; i < len(sql); i++ {
		if sql[i] == 0 {
			return Unparsable // the C parser would stop at it
		}
	}
	s, err := pg.Normalize(sql)
	if err != nil {
		return Unparsable
	}
	return s
}
