package redis

import (
	"testing"

	"github.com/outrigger/outrigger/internal/testenv"
)

// startRedis starts a throwaway redis-server for one test (stopped at its
// end). Under -short, or when redis-server is not installed, the test is
// skipped with a message saying why.
func startRedis(t *testing.T) *testenv.Redis {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: needs a real redis-server")
	}
	return testenv.StartRedis(t, testenv.RedisOptions{})
}

// argv turns strings into a command's arguments.
func argv(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}
