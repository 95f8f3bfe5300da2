package redis

import (
	"bytes"
	"strconv"
)

// helloWithID returns the upstream's HELLO reply (a map in RESP3, a flat
// array in RESP2) with the "id" field set to the client's own id, the one
// CLIENT ID answers: the upstream's id names a shared connection, which is
// no client's. A reply it cannot read is returned unchanged.
func helloWithID(raw []byte, id int64) []byte {
	if len(raw) < 4 || (raw[0] != '%' && raw[0] != '*') {
		return raw
	}
	eol := bytes.Index(raw, []byte("\r\n"))
	if eol < 0 {
		return raw
	}
	n, err := strconv.Atoi(string(raw[1:eol]))
	if err != nil || n < 0 {
		return raw
	}
	if raw[0] == '*' {
		n /= 2
	}
	out := append([]byte(nil), raw[:eol+2]...)
	rr := NewReplyReader(bytes.NewReader(raw[eol+2:]))
	for range n {
		k, err := rr.Next()
		if err != nil {
			return raw
		}
		isID := bytes.Equal(k.Raw, []byte("$2\r\nid\r\n"))
		out = append(out, k.Raw...)
		v, err := rr.Next()
		if err != nil {
			return raw
		}
		if isID {
			out = append(out, ':')
			out = strconv.AppendInt(out, id, 10)
			out = append(out, '\r', '\n')
		} else {
			out = append(out, v.Raw...)
		}
	}
	return out
}
