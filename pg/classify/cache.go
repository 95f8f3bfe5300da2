package classify

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
	m *memo[*Result]
}

// NewCache returns a Cache that holds up to entries results (at least one).
func NewCache(entries int) *Cache { return &Cache{m: newMemo[*Result](entries)} }

// Classify returns the classification of sql, from the cache when it is
// there. Texts longer than MaxCachedSQL are classified but not cached. Parse
// errors are cached like any other result.
func (c *Cache) Classify(sql string) *Result {
	if c == nil {
		return Classify(sql)
	}
	return c.m.get(sql, Classify)
}

// Stats returns how many lookups found their text, how many did not, and how
// many entries were evicted to make room.
func (c *Cache) Stats() (hits, misses, evictions uint64) {
	if c == nil {
		return 0, 0, 0
	}
	return c.m.hits.Load(), c.m.misses.Load(), c.m.evictions.Load()
}

// Len returns the number of cached results.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	return c.m.lru.Len()
}
