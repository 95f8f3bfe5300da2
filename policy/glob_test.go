package policy

import (
	"math/rand/v2"
	"path"
	"strings"
	"testing"
)

func TestNamePattern(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"app", "app", true},
		{"app", "App", false},
		{"app", "apps", false},
		{"*", "", true},
		{"*", "spiffe://example.org/ns/prod/sa/x", true}, // "*" alone crosses '/'
		{"spiffe://example.org/ns/*/sa/reporting", "spiffe://example.org/ns/prod/sa/reporting", true},
		{"spiffe://example.org/ns/*/sa/reporting", "spiffe://example.org/ns/a/b/sa/reporting", false},
		{"spiffe://example.org/*", "spiffe://example.org/ns/prod", false}, // path.Match: '*' stops at '/'
		{"spiffe://example.org/ns/prod/sa/*", "spiffe://example.org/ns/prod/sa/x", true},
		{"spiffe://example.org/ns/prod/sa/*", "spiffe://example.org/ns/prod/sa/", true},
		{"app*", "app", true},
		{"app*", "app-1", true},
		{"app*", "app/1", false},
		{"app*", "ap", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "a/c", false},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[^a-c]x", "dx", true},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{"*-ro", "app-ro", true},
		{"*-ro", "app-rw", false},
		{"10.0.*", "10.0.1", true},
		{"10.0.*", "10.1.1", false},
	}
	for _, tt := range tests {
		p, err := compileName(tt.pat)
		if err != nil {
			t.Fatalf("compileName(%q): %v", tt.pat, err)
		}
		if got := p.match(tt.s); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
	for _, bad := range []string{"[", "a[", `a\`, "[]"} {
		if _, err := compileName(bad); err == nil {
			t.Errorf("compileName(%q) accepted a bad pattern", bad)
		}
	}
}

// TestNamePatternIsPathMatch checks the fast paths against path.Match on
// random patterns and values (except "*" alone, which matches '/' too).
func TestNamePatternIsPathMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const patChars, valChars = "ab/*?[]^-\\", "ab/-^]"
	for range 200000 {
		pat := randString(r, patChars, 6)
		val := randString(r, valChars, 6)
		want, err := path.Match(pat, val)
		if err != nil || pat == "*" {
			continue
		}
		p, err := compileName(pat)
		if err != nil {
			t.Fatalf("compileName(%q): %v", pat, err)
		}
		if got := p.match(val); got != want {
			t.Fatalf("%q matches %q = %v, path.Match says %v", pat, val, got, want)
		}
	}
}

func randString(r *rand.Rand, chars string, max int) string {
	var b strings.Builder
	for range r.IntN(max + 1) {
		b.WriteByte(chars[r.IntN(len(chars))])
	}
	return b.String()
}

func TestKeyPattern(t *testing.T) {
	tests := []struct {
		pat, key string
		want     bool
	}{
		{"*", "", true}, // "*" is every key, as Redis's ACL has it (~* is allkeys)
		{"**", "", false},
		{"*", "anything/at:all", true},
		{"report:*", "report:2024/q1", true}, // Redis '*' crosses '/'
		{"report:*", "report:", true},
		{"report:*", "reports:1", false},
		{"report:*", "report", false},
		{"user:1", "user:1", true},
		{"user:1", "user:12", false},
		{"user:?", "user:1", true},
		{"user:?", "user:12", false},
		{"user:[0-9]", "user:7", true},
		{"user:[9-0]", "user:7", true}, // Redis takes a range either way round
		{"user:[0-9]", "user:a", false},
		{"user:[^0-9]", "user:a", true},
		{"user:[^0-9]", "user:7", false},
		{"user:[abc]", "user:b", true},
		{`user:[\]]`, "user:]", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{"a*b*c", "aXXbYYbZZc", true},
		{"a*b*c", "aXXbYYbZZ", false},
		{"*:*:*", "a:b:c", true},
		{"*:*:*", "a:b", false},
		{"cache:{user}:*", "cache:{user}:42", true},
		{"", "", true},
		{"", "a", false},
		{"\xff*", "\xff\x00\x01", true}, // bytes, not runes
		{"?", "\xff", true},
		{"?", "é", false}, // two bytes
		{`trailing\`, `trailing\`, true},
	}
	for _, tt := range tests {
		p := compileKey(tt.pat)
		if got := p.match([]byte(tt.key)); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pat, tt.key, got, tt.want)
		}
		if got := stringmatchlen(tt.pat, tt.key); got != tt.want && tt.pat != "*" {
			t.Errorf("reference: %q matches %q = %v, want %v", tt.pat, tt.key, got, tt.want)
		}
	}
}

// FuzzKeyPattern checks the key glob against stringmatchlen, a direct port
// of Redis's util.c.
func FuzzKeyPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"report:*", "report:1"}, {"a*b*c", "abbc"}, {"[^a-c]x", "dx"}, {`\[`, "["},
		{"[a-", "a"}, {"*?*", "ab"}, {"[]a]", "a"}, {"[", "["},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, key string) {
		if len(pat) > 64 || len(key) > 256 {
			return // the reference is exponential
		}
		want := stringmatchlen(pat, key) || pat == "*"
		if got := compileKey(pat).match([]byte(key)); got != want {
			t.Fatalf("%q matches %q = %v, Redis says %v", pat, key, got, want)
		}
	})
}

// TestKeyPatternRandom runs the fuzz property on random input.
func TestKeyPatternRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		pat := randString(r, `ab*?[]^-\`, 8)
		key := randString(r, `ab]^-\*`, 8)
		want := stringmatchlen(pat, key) || pat == "*"
		if got := compileKey(pat).match([]byte(key)); got != want {
			t.Fatalf("%q matches %q = %v, Redis says %v", pat, key, got, want)
		}
	}
}

// stringmatchlen is Redis's glob (src/util.c, case-sensitive), ported
// line by line as the reference for the key glob.
func stringmatchlen(pattern, str string) bool {
	p, s := []byte(pattern), []byte(str)
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if stringmatchlen(string(p[1:]), string(s)) {
					return true
				}
				s = s[1:]
			}
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for {
				if len(p) >= 2 && p[0] == '\\' {
					p = p[1:]
					if p[0] == s[0] {
						match = true
					}
				} else if len(p) > 0 && p[0] == ']' {
					break
				} else if len(p) == 0 {
					// Redis steps back so that the outer p++ lands at the end.
					p = []byte{0}
					break
				} else if len(p) >= 3 && p[1] == '-' {
					start, end, c := p[0], p[2], s[0]
					if start > end {
						start, end = end, start
					}
					p = p[2:]
					if c >= start && c <= end {
						match = true
					}
				} else if p[0] == s[0] {
					match = true
				}
				p = p[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}
