package redis

import (
	"bytes"
	"strconv"
)

// helloPairs splits the upstream's HELLO reply (a map in RESP3, a flat
// array in RESP2) into its header line and its key and value replies, raw.
// ok is false for a reply it cannot read.
func helloPairs(raw []byte) (head []byte, pairs [][2][]byte, ok bool) {
	if len(raw) < 4 || (raw[0] != '%' && raw[0] != '*') {
		return nil, nil, false
	}
	eol := bytes.Index(raw, []byte("\r\n"))
	if eol < 0 {
		return nil, nil, false
	}
	n, err := strconv.Atoi(string(raw[1:eol]))
	if err != nil || n < 0 {
		return nil, nil, false
	}
	if raw[0] == '*' {
		n /= 2
	}
	rr := NewReplyReader(bytes.NewReader(raw[eol+2:]))
	for range n {
		k, err := rr.Next()
		if err != nil {
			return nil, nil, false
		}
		kr := append([]byte(nil), k.Raw...)
		v, err := rr.Next()
		if err != nil {
			return nil, nil, false
		}
		pairs = append(pairs, [2][]byte{kr, append([]byte(nil), v.Raw...)})
	}
	return raw[:eol+2], pairs, true
}

var helloIDKey = []byte("$2\r\nid\r\n")

// helloWithID returns the upstream's HELLO reply with the "id" field set to
// the client's own id, the one CLIENT ID answers: the upstream's id names a
// shared connection, which is no client's. A reply it cannot read is
// returned unchanged.
func helloWithID(raw []byte, id int64) []byte {
	head, pairs, ok := helloPairs(raw)
	if !ok {
		return raw
	}
	out := append([]byte(nil), head...)
	for _, kv := range pairs {
		out = append(out, kv[0]...)
		if bytes.Equal(kv[0], helloIDKey) {
			out = append(out, ':')
			out = strconv.AppendInt(out, id, 10)
			out = append(out, '\r', '\n')
		} else {
			out = append(out, kv[1]...)
		}
	}
	return out
}

// helloID is the upstream connection's client id in its HELLO reply (0
// when the reply has none).
func helloID(raw []byte) int64 {
	_, pairs, _ := helloPairs(raw)
	for _, kv := range pairs {
		if bytes.Equal(kv[0], helloIDKey) && len(kv[1]) > 3 && kv[1][0] == ':' {
			id, _ := strconv.ParseInt(string(trimCRLF(kv[1][1:])), 10, 64)
			return id
		}
	}
	return 0
}
