package classify

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCache(t *testing.T) {
	c := NewCache(2)
	a := c.Classify("SELECT 1")
	if b := c.Classify("SELECT 1"); a != b {
		t.Errorf("second lookup did not return the cached result")
	}
	c.Classify("SELECT 2")
	c.Classify("SELECT 3") // evicts SELECT 1
	if hits, misses, evictions := c.Stats(); hits != 1 || misses != 3 || evictions != 1 {
		t.Errorf("Stats() = %d, %d, %d, want 1, 3, 1", hits, misses, evictions)
	}
	if c.Len() != 2 {
		t.Errorf("Len() = %d, want 2", c.Len())
	}

	// Errors are cached too.
	e1 := c.Classify("SELEC 1")
	if e2 := c.Classify("SELEC 1"); e1 != e2 || e1.Err == nil {
		t.Errorf("parse error not cached: %+v %+v", e1, e2)
	}

	// Long texts are classified but not cached.
	long := "SELECT 1 FROM t WHERE a IN (" + strings.Repeat("1,", MaxCachedSQL/2) + "1)"
	r1 := c.Classify(long)
	r2 := c.Classify(long)
	if r1 == r2 || r1.Err != nil || len(r2.Statements) != 1 {
		t.Errorf("long text: cached or misclassified")
	}
}

func TestCacheNilAndSize(t *testing.T) {
	var c *Cache
	if r := c.Classify("SELECT 1"); r.Err != nil || len(r.Statements) != 1 {
		t.Errorf("nil cache: %+v", r)
	}
	if h, m, e := c.Stats(); h != 0 || m != 0 || e != 0 || c.Len() != 0 {
		t.Errorf("nil cache stats")
	}
	c = NewCache(0) // at least one entry
	c.Classify("SELECT 1")
	if c.Len() != 1 {
		t.Errorf("NewCache(0).Len() = %d after one text", c.Len())
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(64)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sql := fmt.Sprintf("SELECT * FROM t%d WHERE a = 1", (i*7+g)%100)
				r := c.Classify(sql)
				if r.Err != nil || len(r.Statements) != 1 || len(r.Statements[0].Tables) != 1 {
					t.Errorf("%q: %+v", sql, r)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	hits, misses, evictions := c.Stats()
	if hits+misses != 8*200 || evictions == 0 {
		t.Errorf("Stats() = %d, %d, %d", hits, misses, evictions)
	}
}
