package redis

import (
	"slices"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"SET k v", []string{"SET", "k", "v"}},
		{"  GET\tk  ", []string{"GET", "k"}},
		{`SET "a b" 'c d'`, []string{"SET", "a b", "c d"}},
		{`SET k "x\"y\\z\n\x41\x7e"`, []string{"SET", "k", "x\"y\\z\nA~"}},
		{`SET k 'it\'s'`, []string{"SET", "k", "it's"}},
		{`SET k ""`, []string{"SET", "k", ""}},
		{`SET k"x y"z`, nil}, // a closing quote followed by more: refused
		{`SET a"b c"`, []string{"SET", "ab c"}},
		{"", []string{}},
	}
	for _, tt := range tests {
		got, err := SplitArgs([]byte(tt.in))
		if tt.want == nil {
			if err == nil {
				t.Errorf("SplitArgs(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		strs := []string{}
		for _, a := range got {
			strs = append(strs, string(a))
		}
		if err != nil || !slices.Equal(strs, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tt.in, strs, err, tt.want)
		}
	}
	for _, in := range []string{`GET "k`, `GET 'k`, `GET "k"x`, `GET 'k'x`} {
		if got, err := SplitArgs([]byte(in)); err == nil {
			t.Errorf("SplitArgs(%q) = %q, want an error", in, got)
		}
	}
}
