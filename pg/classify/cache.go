package classify

import (
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxCachedSQL is the longest SQL text, in bytes, that a Cache keeps. Longer
// texts are classified on every call: they are rarely repeated, and the bound
// keeps a Cache's memory at about entries × (MaxCachedSQL + a Result).
const MaxCachedSQL = 16 << 10

// Cache is a bounded LRU of classification results keyed by statement text.
// It is safe for concurrent use. Results are shared between callers and must
// not be modified. A nil *Cache classifies without caching. The cache keeps
// each text as its key, so a caller must not pass a string that aliases a
// reused buffer (an unsafe conversion of a protocol read buffer).
type Cache struct {
	lru                     *lru.Cache[string, *Result]
	hits, misses, evictions atomic.Uint64
}

// NewCache returns a Cache that holds up to entries results (at least one).
func NewCache(entries int) *Cache {
	c := &Cache{}
	l, err := lru.NewWithEvict(max(entries, 1), func(string, *Result) { c.evictions.Add(1) })
	if err != nil {
		panic("classify: " + err.Error()) // only for a size < 1, excluded above
	}
	c.lru = l
	return c
}

// Classify returns the classification of sql, from the cache when it is
// there. Texts longer than MaxCachedSQL are classified but not cached. Parse
// errors are cached like any other result.
func (c *Cache) Classify(sql string) *Result {
	if c == nil {
		return Classify(sql)
	}
	if r, ok := c.lru.Get(sql); ok {
		c.hits.Add(1)
		return r
	}
	c.misses.Add(1)
	r := Classify(sql)
	if len(sql) <= MaxCachedSQL {
		c.lru.Add(sql, r)
	}
	return r
}

// Stats returns how many lookups found their text, how many did not, and how
// many entries were evicted to make room.
func (c *Cache) Stats() (hits, misses, evictions uint64) {
	if c == nil {
		return 0, 0, 0
	}
	return c.hits.Load(), c.misses.Load(), c.evictions.Load()
}

// Len returns the number of cached results.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}
