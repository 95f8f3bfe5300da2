package classify

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ sql, want string }{
		{"SELECT * FROM orders WHERE id = 42 AND name = 'secret'", "SELECT * FROM orders WHERE id = $1 AND name = $2"},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
		{"UPDATE t SET a = $1, b = 'x' WHERE c = $2", "UPDATE t SET a = $1, b = $3 WHERE c = $2"},
		{"INSERT INTO t VALUES (1, 'two', 3.0, E'\\x04')", "INSERT INTO t VALUES ($1, $2, $3, $4)"},
		{"SELECT 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/", "SELECT $1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"},
		{"SELEC 'secret' FROM", Unparsable},
		{"SELECT 'a\x00b'", Unparsable},
	}
	n := NewNormalizer(8)
	for _, tt := range tests {
		for _, nz := range []*Normalizer{nil, n, n} { // uncached, miss, hit
			if got := nz.Normalize(tt.sql); got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		}
	}
	if hits, misses := n.Stats(); hits != uint64(len(tests)) || misses != uint64(len(tests)) {
		t.Errorf("stats: %d hits, %d misses", hits, misses)
	}
	long := "SELECT '" + strings.Repeat("x", MaxCachedSQL) + "'"
	if got := n.Normalize(long); got != "SELECT $1" {
		t.Errorf("a long text: %.40q", got)
	}
	if _, ok := n.m.lru.Get(long); ok {
		t.Error("a text over MaxCachedSQL was cached")
	}
}

func BenchmarkNormalizeHit(b *testing.B) {
	n := NewNormalizer(100)
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 4242"
	n.Normalize(sql)
	b.ReportAllocs()
	for b.Loop() {
		n.Normalize(sql)
	}
}

func BenchmarkNormalizeMiss(b *testing.B) {
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 4242"
	b.ReportAllocs()
	for b.Loop() {
		normalize(sql)
	}
}
