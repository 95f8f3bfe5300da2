package classify

import "unsafe"

// ClassifyBytes is Classify for a text in a buffer the caller reuses (a
// protocol message): a cached text is found without copying it, and only a
// miss copies the text for the cache to keep.
func (c *Cache) ClassifyBytes(sql []byte) *Result {
	if c != nil && len(sql) > 0 {
		if r, ok := c.m.lookup(unsafe.String(&sql[0], len(sql))); ok {
			return r
		}
	}
	return c.Classify(string(sql))
}
