package redis

// keysFunc finds the keys of one command the way Redis's own getkeys
// function for it does, appending them to dst.
type keysFunc func(args [][]byte, dst [][]byte) [][]byte

// keyProcs are the commands for which Redis has a hand-written getkeys
// function, which it uses when the key specs cannot be followed: always for
// SORT, SORT_RO and MIGRATE (whose specs are "unknown" or "incomplete"), and
// for the others when the arguments make a spec fail (a key count that
// Redis's atoi reads but its strict parser does not, or XREADGROUP's
// STREAMS found where the spec does not look). A test checks that every
// command with an unknown or incomplete spec is here; the randomized test
// against COMMAND GETKEYS checks the rest.
var keyProcs = map[string]keysFunc{
	"sort":    sortKeys,
	"sort_ro": sortROKeys,
	"migrate": migrateKeys,

	"xread":      xreadKeys,
	"xreadgroup": xreadKeys,

	"georadius":         georadiusKeys,
	"georadiusbymember": georadiusKeys,

	// command numkeys key ...
	"zunion":     countedKeys(0, 1, 2),
	"zinter":     countedKeys(0, 1, 2),
	"zdiff":      countedKeys(0, 1, 2),
	"zintercard": countedKeys(0, 1, 2),
	"sintercard": countedKeys(0, 1, 2),
	"lmpop":      countedKeys(0, 1, 2),
	"zmpop":      countedKeys(0, 1, 2),
	// command destination numkeys key ...
	"zunionstore": countedKeys(1, 2, 3),
	"zinterstore": countedKeys(1, 2, 3),
	"zdiffstore":  countedKeys(1, 2, 3),
	// command script|function|timeout numkeys key ...
	"eval":       countedKeys(0, 2, 3),
	"evalsha":    countedKeys(0, 2, 3),
	"eval_ro":    countedKeys(0, 2, 3),
	"evalsha_ro": countedKeys(0, 2, 3),
	"fcall":      countedKeys(0, 2, 3),
	"fcall_ro":   countedKeys(0, 2, 3),
	"blmpop":     countedKeys(0, 2, 3),
	"bzmpop":     countedKeys(0, 2, 3),
}

// Keys appends to dst every key argument of args, a whole command (args[0]
// is the command name) that Lookup resolved to c, and returns the extended
// slice. The keys are args' own elements, not copies. It finds the same keys
// as Redis's COMMAND GETKEYS, in the same order: by the key specs, and where
// they cannot be followed (always for SORT, SORT_RO and MIGRATE, and for a
// few commands on odd arguments) by the rules of Redis's own getkeys
// functions. Malformed arguments mostly give no keys, as in Redis, which
// then rejects the command. Like Redis, it does not count the keys that
// SORT's BY and GET patterns name: a key policy must refuse those options
// (Redis's ACL does, for users with restricted keys). Keys does not
// allocate when dst has room.
func (c *Command) Keys(args [][]byte, dst [][]byte) [][]byte {
	if c == nil {
		return dst
	}
	base := len(dst)
	if out, ok := c.keysFromSpecs(args, dst); ok {
		return out
	}
	// A spec could not be followed: like Redis, drop what the specs found
	// and use the command's own rule, if it has one.
	dst = dst[:base]
	if c.keys != nil {
		return c.keys(args, dst)
	}
	return dst
}

// keysFromSpecs follows c.KeySpecs. It reports false when a spec cannot be
// followed (unknown, incomplete, or malformed arguments) and the caller must
// fall back to c.keys; the appended keys then do not count.
func (c *Command) keysFromSpecs(args [][]byte, dst [][]byte) ([][]byte, bool) {
	argc := len(args)
	usable := false
	for i := range c.KeySpecs {
		spec := &c.KeySpecs[i]
		if spec.Flags&KeyNotKey != 0 {
			continue
		}
		usable = true

		first := 0
		switch spec.Begin.Type {
		case BeginIndex:
			first = spec.Begin.Index
		case BeginKeyword:
			first = keywordSearch(args, spec.Begin.Keyword, spec.Begin.StartFrom)
			if first == 0 {
				continue // no keyword, no keys from this spec
			}
		default:
			return dst, false
		}

		var last, step int
		switch spec.Find.Type {
		case FindRange:
			step = spec.Find.KeyStep
			switch {
			case spec.Find.LastKey >= 0:
				last = first + spec.Find.LastKey
			case spec.Find.Limit == 0:
				last = argc + spec.Find.LastKey
			default:
				last = first + (argc-first)/spec.Find.Limit + spec.Find.LastKey
			}
		case FindKeyNum:
			step = spec.Find.KeyStep
			idx := first + spec.Find.KeyNumIdx
			if idx < 0 || idx >= argc {
				return dst, false
			}
			n, ok := string2ll(args[idx])
			if !ok || n < 0 {
				return dst, false
			}
			first += spec.Find.FirstKey
			// Redis adds the count as a C int: a count beyond 32 bits
			// wraps, and then usually points past the end.
			last = first + int(int32(n)) - 1
		default:
			return dst, false
		}

		if step <= 0 || first <= 0 || first >= argc || last >= argc || last < first {
			return dst, false // a syntax error Redis will report
		}
		for k := first; k <= last; k += step {
			dst = append(dst, args[k])
		}
		if spec.Flags&KeyIncomplete != 0 {
			return dst, false
		}
	}
	return dst, usable
}

// keywordSearch returns the index just after the first argument equal to
// keyword (ignoring case), searching from startFrom forwards, or from
// len(args)+startFrom backwards when startFrom is negative, never looking at
// the command name or (forwards) at the last argument; 0 if there is none.
func keywordSearch(args [][]byte, keyword string, startFrom int) int {
	argc := len(args)
	start, end := startFrom, argc-1
	if startFrom <= 0 {
		start, end = argc+startFrom, 1
	}
	dir := 1
	if start > end {
		dir = -1
	}
	for i := start; i != end; i += dir {
		if i >= argc || i < 1 {
			break
		}
		if equalFold(args[i], keyword) {
			return i + 1
		}
	}
	return 0
}

// string2ll parses a decimal integer the way Redis's string2ll does: an
// optional '-', no leading zeros, nothing else, within 64 bits.
func string2ll(b []byte) (int64, bool) {
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' || u > (1<<64-1)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
		if u < uint64(c-'0') { // wrapped
			return 0, false
		}
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true // -1<<63 included
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// equalFold reports whether b equals s ignoring ASCII case, comparing b
// only up to its first NUL byte: Redis compares option names with
// strcasecmp, so to Redis "STORE\x00x" is the keyword STORE, and so it must
// be here.
func equalFold(b []byte, s string) bool {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// cAtoi is C's atoi as glibc has it, (int)strtol(s, NULL, 10): leading
// white space, an optional sign, digits up to the first other byte;
// clamped to 64 bits, then truncated to 32. Redis reads some key counts
// with it.
func cAtoi(b []byte) int32 {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var u uint64
	overflow := false
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if u > (1<<63)/10 {
			overflow = true
			continue
		}
		u = u*10 + uint64(b[i]-'0')
		if u > 1<<63 {
			overflow = true
		}
	}
	var v int64
	switch {
	case neg && (overflow || u == 1<<63):
		v = -1 << 63 // LONG_MIN
	case overflow || u >= 1<<63:
		v = 1<<63 - 1 // LONG_MAX
	case neg:
		v = -int64(u)
	default:
		v = int64(u)
	}
	return int32(v)
}

// countedKeys returns the getkeys function of a command whose key count is
// at argument countAt and whose keys start at firstAt, with the destination
// key at storeAt (0: none) after them, as Redis's genericGetKeys does (the
// key specs, used first, list it before them).
func countedKeys(storeAt, countAt, firstAt int) keysFunc {
	return func(args [][]byte, dst [][]byte) [][]byte {
		if countAt >= len(args) {
			return dst
		}
		n := int(cAtoi(args[countAt]))
		if n < 1 || n > len(args)-firstAt {
			return dst
		}
		dst = append(dst, args[firstAt:firstAt+n]...)
		if storeAt != 0 {
			dst = append(dst, args[storeAt])
		}
		return dst
	}
}

// xreadKeys finds the keys of XREAD and XREADGROUP: half of the arguments
// after the STREAMS that ends the options.
func xreadKeys(args [][]byte, dst [][]byte) [][]byte {
	streams := -1
scan:
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case equalFold(a, "block"), equalFold(a, "count"):
			i++
		case equalFold(a, "group"):
			i += 2
		case equalFold(a, "noack"):
		case equalFold(a, "streams"):
			streams = i
			break scan
		default:
			break scan // a syntax error Redis will report
		}
	}
	if streams < 0 {
		return dst
	}
	n := len(args) - streams - 1
	if n == 0 || n%2 != 0 {
		return dst
	}
	return append(dst, args[streams+1:streams+1+n/2]...)
}

// georadiusKeys finds the keys of GEORADIUS and GEORADIUSBYMEMBER: the key,
// and the destination of the last STORE or STOREDIST.
func georadiusKeys(args [][]byte, dst [][]byte) [][]byte {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, args[1])
	store := 0
	for i := 5; i < len(args); i++ {
		if (equalFold(args[i], "store") || equalFold(args[i], "storedist")) && i+1 < len(args) {
			store = i + 1
			i++
		}
	}
	if store != 0 {
		dst = append(dst, args[store])
	}
	return dst
}

// sortKeys finds the keys of SORT key [BY pattern] [LIMIT offset count]
// [GET pattern ...] [ASC|DESC] [ALPHA] [STORE destination]: the sorted key
// and the destination of the last STORE. Like Redis, it does not return the
// keys that BY and GET patterns name, which depend on the data.
func sortKeys(args [][]byte, dst [][]byte) [][]byte {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, args[1])
	store := 0
	for i := 2; i < len(args); i++ {
		switch a := args[i]; {
		case equalFold(a, "limit"):
			i += 2
		case equalFold(a, "store"):
			if i+1 < len(args) {
				store = i + 1 // the last STORE wins, as in SORT itself
			}
		case equalFold(a, "get"), equalFold(a, "by"):
			i++
		}
	}
	if store != 0 {
		dst = append(dst, args[store])
	}
	return dst
}

// sortROKeys finds the key of SORT_RO key ...: the sorted key.
func sortROKeys(args [][]byte, dst [][]byte) [][]byte {
	if len(args) < 2 {
		return dst
	}
	return append(dst, args[1])
}

// migrateKeys finds the keys of MIGRATE host port key|"" db timeout [COPY]
// [REPLACE] [AUTH password | AUTH2 username password] [KEYS key ...]: the
// keys after KEYS when the key argument is empty, else the key argument.
// KEYS with a non-empty key argument is an error in Redis, and gives no keys.
func migrateKeys(args [][]byte, dst [][]byte) [][]byte {
	argc := len(args)
	if argc < 4 {
		return dst
	}
	first, num := 3, 1
	if argc > 6 {
	scan:
		for i := 6; i < argc; i++ {
			switch a := args[i]; {
			case equalFold(a, "keys"):
				if len(args[3]) > 0 {
					return dst
				}
				first, num = i+1, argc-i-1
				break scan
			case equalFold(a, "auth"):
				i++
			case equalFold(a, "auth2"):
				i += 2
			}
		}
	}
	for i := first; i < first+num; i++ {
		dst = append(dst, args[i])
	}
	return dst
}
