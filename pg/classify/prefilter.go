package classify

// MayAffectSession reports whether sql could have a session-state Effect. It
// never returns false for SQL that Classify gives an Effect, so a caller can
// skip the parser when it only needs Effects and this returns false. It is a
// case-insensitive scan that does not allocate and reads each byte a bounded
// number of times; it returns true when
//
//   - a statement starts (at the beginning, or after any ';', past white
//     space and comments) with SET, RESET, DO, LOAD, LISTEN, PREPARE,
//     DISCARD, DEALLOCATE or DECLARE: the statements whose effects count only
//     at the top level;
//   - "set_config", "advisory" or "temp" occurs anywhere (the effects that
//     function calls and temporary objects have wherever they appear);
//   - "u&" occurs anywhere: a Unicode-escaped identifier can spell any name.
//
// A ';' inside a literal or a comment is taken as a statement end too, which
// only ever adds true answers. UPDATE ... SET does not count: SET matters
// only where a statement starts.
func MayAffectSession(sql string) bool {
	budget := 4*len(sql) + 64 // bounds the look-ahead over comments
	if startsEffectStatement(sql, 0, &budget) {
		return true
	}
	for i := 0; i < len(sql); i++ {
		switch sql[i] {
		case ';':
			if startsEffectStatement(sql, i+1, &budget) {
				return true
			}
		case 's', 'S':
			if hasPrefixFold(sql[i:], "set_config") {
				return true
			}
		case 'a', 'A':
			if hasPrefixFold(sql[i:], "advisory") {
				return true
			}
		case 't', 'T':
			if hasPrefixFold(sql[i:], "temp") {
				return true
			}
		case 'u', 'U':
			if i+1 < len(sql) && sql[i+1] == '&' {
				return true
			}
		}
		if budget < 0 {
			return true
		}
	}
	return false
}

// startsEffectStatement reports whether the statement that would start at
// sql[i] begins with a keyword whose statement can have an Effect. It skips
// white space and comments as the Postgres lexer does ('--' to the end of the
// line; '/*' ... '*/', nested). An unterminated block comment, or running out
// of budget, answers true.
func startsEffectStatement(sql string, i int, budget *int) bool {
	for i < len(sql) {
		*budget--
		if *budget < 0 {
			return true
		}
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
				*budget--
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth := 1
			i += 2
			for depth > 0 {
				if i+1 >= len(sql) {
					return true // unterminated: maybe not a comment at all
				}
				*budget--
				switch {
				case sql[i] == '/' && sql[i+1] == '*':
					depth++
					i += 2
				case sql[i] == '*' && sql[i+1] == '/':
					depth--
					i += 2
				default:
					i++
				}
			}
			if *budget < 0 {
				return true
			}
		default:
			return startsWithEffectKeyword(sql[i:])
		}
	}
	return false
}

// startsWithEffectKeyword reports whether s starts with one of the keywords
// of statements that have effects only at the top level. It matches prefixes
// ("settings" counts as "set"), which can only add true answers.
func startsWithEffectKeyword(s string) bool {
	if len(s) < 2 {
		return false
	}
	switch s[0] | 0x20 {
	case 's':
		return hasPrefixFold(s, "set")
	case 'r':
		return hasPrefixFold(s, "reset")
	case 'd':
		return hasPrefixFold(s, "do") || hasPrefixFold(s, "discard") ||
			hasPrefixFold(s, "deallocate") || hasPrefixFold(s, "declare")
	case 'l':
		return hasPrefixFold(s, "load") || hasPrefixFold(s, "listen")
	case 'p':
		return hasPrefixFold(s, "prepare")
	}
	return false
}
