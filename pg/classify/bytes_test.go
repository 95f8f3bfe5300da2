package classify

import "testing"

func TestClassifyBytesReusedBuffer(t *testing.T) {
	c := NewCache(8)
	buf := make([]byte, 0, 64)
	buf = append(buf, "DELETE FROM t"...)
	first := c.ClassifyBytes(buf)
	buf = append(buf[:0], "SELECT * FROM t"...) // the caller reuses its buffer
	if r := c.Classify("DELETE FROM t"); r != first || r.Statements[0].Kind != KindDelete {
		t.Fatalf("the cached key was clobbered by the caller's buffer: %+v", r)
	}
	if r := c.ClassifyBytes(buf); r.Statements[0].Kind != KindSelect {
		t.Fatalf("%+v", r)
	}
	if hits, misses, _ := c.Stats(); hits != 1 || misses != 2 {
		t.Errorf("hits %d misses %d, want 1 and 2", hits, misses)
	}
}

func BenchmarkClassifyBytesHit(b *testing.B) {
	c := NewCache(8)
	buf := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	c.ClassifyBytes(buf)
	b.ReportAllocs()
	for b.Loop() {
		c.ClassifyBytes(buf)
	}
}
