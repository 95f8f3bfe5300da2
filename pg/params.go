package pg

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// settings is a set of session parameters a connection should have, each as
// the one statement that gives it (`SET search_path TO a, b`). A settings
// value is immutable once built: sessions and server connections share them,
// and the sum makes "same settings" a cheap check on every attach.
type settings struct {
	m   map[string]string
	sum uint64
	// unknown marks a server whose parameters Outrigger cannot vouch
	// for: the next client gets RESET ALL before its own settings.
	unknown bool
}

var settingsSeed = maphash.MakeSeed()

// emptySettings is what a fresh server connection has: nothing set.
var emptySettings = &settings{}

// unknownSettings is what a server has after a transaction that changed
// parameters was rolled back in a way Outrigger cannot follow.
var unknownSettings = &settings{unknown: true}

func newSettings(m map[string]string) *settings {
	if len(m) == 0 {
		return emptySettings
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	var h maphash.Hash
	h.SetSeed(settingsSeed)
	for _, k := range names {
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(m[k])
		h.WriteByte(0)
	}
	return intern(&settings{m: m, sum: h.Sum64()})
}

// interned are settings made so far, by sum: clients with the same
// settings (as a pool's clients mostly are) share one *settings, so the
// check before every transaction that a server's settings are the
// client's (equal) is a pointer comparison instead of a map walk.
var interned = struct {
	sync.Mutex
	m map[uint64]*settings
}{m: map[uint64]*settings{}}

// maxInterned bounds interned; past it the table starts over (settings
// made before stay valid, they only compare the slow way).
const maxInterned = 4096

func intern(s *settings) *settings {
	interned.Lock()
	defer interned.Unlock()
	if prev := interned.m[s.sum]; prev != nil && prev.equal(s) {
		return prev
	}
	if len(interned.m) >= maxInterned {
		clear(interned.m)
	}
	interned.m[s.sum] = s
	return s
}

func (s *settings) equal(o *settings) bool {
	if s == o {
		return true
	}
	if s.unknown || o.unknown {
		return false
	}
	if s.sum != o.sum || len(s.m) != len(o.m) {
		return false
	}
	for k, v := range s.m {
		if o.m[k] != v {
			return false
		}
	}
	return true
}

// with returns s with name set by stmt ("" stmt: name removed).
func (s *settings) with(name, stmt string) *settings {
	m := make(map[string]string, len(s.m)+1)
	for k, v := range s.m {
		m[k] = v
	}
	if stmt == "" {
		delete(m, name)
	} else {
		m[name] = stmt
	}
	return newSettings(m)
}

// diffSQL returns the statements that turn a connection that has from into
// one that has to: RESET for what to lacks, the SET of to for what differs.
// "" means nothing to do.
func diffSQL(from, to *settings) string {
	if from.equal(to) {
		return ""
	}
	var b strings.Builder
	if from.unknown {
		b.WriteString("RESET ALL;")
		from = emptySettings
	}
	names := make([]string, 0, len(from.m)+len(to.m))
	for k := range from.m {
		if _, ok := to.m[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString("RESET ")
		b.WriteString(quoteIdent(k))
		b.WriteString(";")
	}
	names = names[:0]
	for k, v := range to.m {
		if from.m[k] != v {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString(to.m[k])
		b.WriteString(";")
	}
	return b.String()
}

// setStatement is the statement that gives name the value v, where v is
// the parameter's text as a StartupMessage or a ParameterStatus carries it.
// It is set_config, not SET: SET would read a list value such as
// search_path's `"$user", public` as one quoted name.
func setStatement(name, v string) string {
	return "SELECT pg_catalog.set_config(" + quoteLiteral(name) + ", " + quoteLiteral(v) + ", false)"
}

// quoteIdent quotes a parameter name for SET and RESET. Names of
// placeholder parameters have a dot ("x.y"): each part is quoted.
func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// quoteLiteral quotes v as a standard SQL string literal, E” form when it
// holds a backslash so the result is the same whatever
// standard_conforming_strings says.
func quoteLiteral(v string) string {
	q := "'" + strings.ReplaceAll(v, "'", "''") + "'"
	if strings.Contains(v, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// startupSettings turns the parameters of a StartupMessage into settings:
// every run-time parameter and every -c name=value / --name=value of
// options. It returns a client-facing error for options it cannot carry.
func startupSettings(params map[string]string) (*settings, error) {
	m := map[string]string{}
	for k, v := range params {
		switch k {
		case "user", "database", "replication", "options":
			continue
		}
		if strings.HasPrefix(k, "_pq_.") {
			continue // protocol extensions: refused in NegotiateProtocolVersion
		}
		m[strings.ToLower(k)] = setStatement(strings.ToLower(k), v)
	}
	if opts := params["options"]; opts != "" {
		words := splitOptions(opts)
		for i := 0; i < len(words); i++ {
			w := words[i]
			var kv string
			switch {
			case w == "-c" && i+1 < len(words):
				i++
				kv = words[i]
			case strings.HasPrefix(w, "-c"):
				kv = w[2:]
			case strings.HasPrefix(w, "--"):
				kv = w[2:]
			default:
				return nil, fatalf(codeFeatureNotSupported, "unsupported startup option %q (only -c name=value is carried through the pool)", w)
			}
			name, val, ok := strings.Cut(kv, "=")
			if !ok || name == "" {
				return nil, fatalf(codeProtocolViolation, "invalid startup option %q", kv)
			}
			name = strings.ToLower(strings.ReplaceAll(name, "-", "_"))
			m[name] = setStatement(name, val)
		}
	}
	return newSettings(m), nil
}

// splitOptions splits the options startup parameter on spaces; a backslash
// makes the next character literal, as Postgres does.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	have := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			have = true
		case c == ' ' || c == '\t' || c == '\n':
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
