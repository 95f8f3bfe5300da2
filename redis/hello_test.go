package redis

import "testing"

func TestHelloWithID(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"resp3", "%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$2\r\nid\r\n:17\r\n$7\r\nmodules\r\n*0\r\n",
			"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$2\r\nid\r\n:42\r\n$7\r\nmodules\r\n*0\r\n"},
		{"resp2", "*4\r\n$2\r\nid\r\n:9\r\n$5\r\nproto\r\n:2\r\n", "*4\r\n$2\r\nid\r\n:42\r\n$5\r\nproto\r\n:2\r\n"},
		{"error passes", "-ERR nope\r\n", "-ERR nope\r\n"},
		{"truncated passes", "%2\r\n$2\r\nid\r\n:9\r\n", "%2\r\n$2\r\nid\r\n:9\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(helloWithID([]byte(tt.in), 42)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
