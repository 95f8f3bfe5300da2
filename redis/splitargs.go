package redis

import "errors"

// errUnbalancedQuotes is SplitArgs' error; Redis answers an inline command
// with it "Protocol error: unbalanced quotes in request".
var errUnbalancedQuotes = errors.New("unbalanced quotes in request")

// SplitArgs splits a command line into arguments the way Redis splits an
// inline command and redis-cli a typed one (sdssplitargs): white space
// separates; "..." takes the escapes \n \r \t \b \a \\ \" and \xHH;
// '...' takes \' alone; a closing quote must be followed by white space or
// the end. An unbalanced quote is an error.
func SplitArgs(line []byte) ([][]byte, error) {
	var out [][]byte
	i := 0
	for {
		for i < len(line) && isArgSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return out, nil
		}
		var arg []byte
		inDouble, inSingle := false, false
		for done := false; !done; {
			switch {
			case inDouble:
				if i >= len(line) {
					return nil, errUnbalancedQuotes
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					arg = append(arg, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					switch e := line[i]; e {
					case 'n':
						arg = append(arg, '\n')
					case 'r':
						arg = append(arg, '\r')
					case 't':
						arg = append(arg, '\t')
					case 'b':
						arg = append(arg, '\b')
					case 'a':
						arg = append(arg, '\a')
					default:
						arg = append(arg, e)
					}
				case c == '"':
					if done = closes(line, i); !done {
						return nil, errUnbalancedQuotes
					}
				default:
					arg = append(arg, c)
				}
				i++
			case inSingle:
				if i >= len(line) {
					return nil, errUnbalancedQuotes
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					arg = append(arg, '\'')
					i++
				case c == '\'':
					if done = closes(line, i); !done {
						return nil, errUnbalancedQuotes
					}
				default:
					arg = append(arg, c)
				}
				i++
			default:
				if i >= len(line) || isArgSpace(line[i]) {
					done = true
					break
				}
				switch line[i] {
				case '"':
					inDouble = true
				case '\'':
					inSingle = true
				default:
					arg = append(arg, line[i])
				}
				i++
			}
		}
		if arg == nil {
			arg = []byte{}
		}
		out = append(out, arg)
	}
}

func isArgSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// closes reports whether the closing quote at i ends its argument: white
// space or the end of the line must follow it.
func closes(line []byte, i int) bool { return i+1 >= len(line) || isArgSpace(line[i+1]) }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
