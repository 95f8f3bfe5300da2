package classify

import (
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// memo is a bounded LRU of results computed from SQL text, keyed by the
// exact text, with hit, miss and eviction counts: what Cache and
// Normalizer keep. Texts longer than MaxCachedSQL are computed on every
// call and not kept. It keeps each text as its key, so a caller must not
// pass a string that aliases a reused buffer.
type memo[V any] struct {
	lru                     *lru.Cache[string, V]
	hits, misses, evictions atomic.Uint64
}

func newMemo[V any](entries int) *memo[V] {
	m := &memo[V]{}
	l, err := lru.NewWithEvict(max(entries, 1), func(string, V) { m.evictions.Add(1) })
	if err != nil {
		panic("classify: " + err.Error()) // only for a size < 1, excluded above
	}
	m.lru = l
	return m
}

// lookup returns the result kept for sql, without keeping sql (so it may
// alias a reused buffer).
func (m *memo[V]) lookup(sql string) (V, bool) {
	v, ok := m.lru.Get(sql)
	if ok {
		m.hits.Add(1)
	}
	return v, ok
}

// get returns the result for sql, computing and keeping it on a miss.
func (m *memo[V]) get(sql string, compute func(string) V) V {
	if v, ok := m.lookup(sql); ok {
		return v
	}
	m.misses.Add(1)
	v := compute(sql)
	if len(sql) <= MaxCachedSQL {
		m.lru.Add(sql, v)
	}
	return v
}
