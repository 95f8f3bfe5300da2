package policy

import (
	"path"
	"strings"
)

// patKind says how a compiled pattern matches: the common shapes get a
// comparison instead of a glob walk.
type patKind uint8

const (
	patAny    patKind = iota // "*": every value
	patExact                 // no glob characters
	patPrefix                // literal text then one trailing '*'
	patGlob                  // anything else
)

// namePattern is a glob on a name: a principal, user, database, listener,
// source address text, or one part of a table or function name. It has
// path.Match semantics ('*' and '?' do not match '/'), except that "*" alone
// matches every value. Matching does not allocate.
type namePattern struct {
	kind patKind
	s    string // the literal (patExact), the prefix (patPrefix) or the glob
}

// compileName compiles a path.Match pattern; a malformed one is an error.
func compileName(p string) (namePattern, error) {
	if _, err := path.Match(p, ""); err != nil {
		return namePattern{}, err
	}
	switch {
	case p == "*":
		return namePattern{kind: patAny}, nil
	case !strings.ContainsAny(p, `*?[\`):
		return namePattern{kind: patExact, s: p}, nil
	case strings.HasSuffix(p, "*") && !strings.ContainsAny(p[:len(p)-1], `*?[\`):
		return namePattern{kind: patPrefix, s: p[:len(p)-1]}, nil
	}
	return namePattern{kind: patGlob, s: p}, nil
}

// match reports whether s matches.
func (n namePattern) match(s string) bool {
	switch n.kind {
	case patAny:
		return true
	case patExact:
		return s == n.s
	case patPrefix:
		// path.Match's '*' stops at '/'.
		return strings.HasPrefix(s, n.s) && strings.IndexByte(s[len(n.s):], '/') < 0
	}
	ok, _ := path.Match(n.s, s)
	return ok
}

// keyPattern is a glob on a Redis key with Redis's own glob semantics (those
// of KEYS, SCAN MATCH and ACL key patterns): byte-oriented, '*' matches any
// bytes ('/' included), '?' one byte, "[abc]", "[^a-z]" a class, '\' quotes
// the next byte. "*" alone matches every key, the empty one too (Redis's
// ACL treats ~* so); otherwise, as in Redis, only "" matches the empty key.
// Matching does not allocate.
type keyPattern struct {
	kind patKind
	s    string
}

// compileKey compiles a Redis glob. Every string is a Redis glob; the
// config validator additionally rejects malformed classes.
func compileKey(p string) keyPattern {
	switch {
	case p == "*":
		return keyPattern{kind: patAny}
	case !strings.ContainsAny(p, `*?[\`):
		return keyPattern{kind: patExact, s: p}
	case strings.HasSuffix(p, "*") && !strings.ContainsAny(p[:len(p)-1], `*?[\`):
		return keyPattern{kind: patPrefix, s: p[:len(p)-1]}
	}
	return keyPattern{kind: patGlob, s: p}
}

// match reports whether key matches.
func (k keyPattern) match(key []byte) bool {
	switch k.kind {
	case patAny:
		return true
	case patExact:
		return string(key) == k.s
	case patPrefix:
		return len(key) >= len(k.s) && string(key[:len(k.s)]) == k.s
	}
	return redisGlob(k.s, key)
}

// redisGlob reports whether s matches the Redis glob p, as Redis's
// stringmatchlen does (case-sensitive). Every token but '*' consumes exactly
// one byte, so backtracking to the last '*' is enough: the cost is at most
// len(p)×len(s) steps, never exponential.
func redisGlob(p string, s []byte) bool {
	if len(s) == 0 {
		return len(p) == 0 // as in Redis, where "**" does not match the empty key
	}
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if pi == len(p) {
					return true
				}
				starP, starS = pi, si
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next := matchClass(p, pi, s[si]); ok {
					pi = next
					si++
					continue
				}
			case '\\':
				lit, next := c, pi+1
				if pi+1 < len(p) {
					lit, next = p[pi+1], pi+2
				}
				if lit == s[si] {
					pi = next
					si++
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class that starts at p[i] == '[', as
// Redis does: an optional '^' negates, '\' quotes, "a-z" is a range (either
// way round), and a class without its ']' ends with the pattern. It returns
// whether c is in the class and the index just past it.
func matchClass(p string, i int, c byte) (bool, int) {
	i++
	not := i < len(p) && p[i] == '^'
	if not {
		i++
	}
	match := false
	for ; i < len(p) && p[i] != ']'; i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			if p[i] == c {
				match = true
			}
		case i+2 < len(p) && p[i+1] == '-':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= c && c <= hi {
				match = true
			}
			i += 2
		case p[i] == c:
			match = true
		}
	}
	return match != not, min(i+1, len(p))
}
