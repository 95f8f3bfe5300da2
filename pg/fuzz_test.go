package pg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/pg/classify"
)

// Native fuzz targets for what Outrigger decodes from untrusted bytes: the
// message framer (both sides of every session), the StartupMessage and the
// settings it carries to servers, and the splitting of Parse, Bind,
// Describe, Close and Execute bodies. Seeds: the f.Add calls below and
// testdata/fuzz/<FuzzName>/. Run one with
//
//	go test ./pg -run '^$' -fuzz '^FuzzFrameReader$' -fuzztime 2m

// fuzzMsg is a whole message: type, length, body.
func fuzzMsg(typ byte, body string) []byte { return appendMsg(nil, typ, []byte(body)) }

// frameOutcome is what a frameReader made of an input: the messages (raw)
// and how it stopped.
type frameOutcome struct {
	raws [][]byte
	end  string // "eof", "unexpected-eof", "protocol"
}

// readFrames runs a frameReader with a buffer of size bytes over r to
// its end, first taking skip bytes with Read (as startup does), checking
// each message against data and max as it goes.
func readFrames(t *testing.T, r io.Reader, data []byte, size, max, skip int) frameOutcome {
	t.Helper()
	fr := newFrameReader(r, size, max)
	var out frameOutcome
	if skip > 0 {
		got := make([]byte, skip)
		if _, err := io.ReadFull(fr, got); err != nil {
			t.Fatalf("Read %d of %d bytes: %v", skip, len(data), err)
		}
		if !bytes.Equal(got, data[:skip]) {
			t.Fatalf("Read gave %q, want %q", got, data[:skip])
		}
	}
	off := skip
	for range len(data) + 2 {
		ready := fr.ready()
		// Whether a whole message is waiting per the input itself.
		fits := false
		if rest := len(data) - off; rest >= 5 {
			n := int(binary.BigEndian.Uint32(data[off+1 : off+5]))
			fits = n+1 <= rest && n+1 <= size
		}
		m, err := fr.next()
		if err != nil {
			var pe *ProtocolError
			switch {
			case err == io.EOF:
				if off != len(data) {
					t.Fatalf("io.EOF at offset %d of %d", off, len(data))
				}
				out.end = "eof"
			case errors.Is(err, io.ErrUnexpectedEOF):
				if off >= len(data) {
					t.Fatalf("ErrUnexpectedEOF at the end of the input (offset %d)", off)
				}
				out.end = "unexpected-eof"
			case errors.As(err, &pe):
				if len(data)-off < 5 {
					t.Fatalf("protocol error without a whole header: %v", err)
				}
				n := int(binary.BigEndian.Uint32(data[off+1 : off+5]))
				if n >= 4 && n <= max {
					t.Fatalf("protocol error for a length %d within 4..%d: %v", n, max, err)
				}
				if pe.SQLState() != "08P01" {
					t.Fatalf("SQLState %q", pe.SQLState())
				}
				out.end = "protocol"
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if ready && fits && out.end != "protocol" {
				t.Fatalf("ready() said a whole message was buffered, then next: %v", err)
			}
			return out
		}
		n := len(m.Raw) - 1
		if n > max {
			t.Fatalf("message of length %d over max %d", n, max)
		}
		if len(m.Raw) < 5 || m.Raw[0] != m.Type || int(binary.BigEndian.Uint32(m.Raw[1:5])) != n || !bytes.Equal(m.Body, m.Raw[5:]) {
			t.Fatalf("inconsistent msg: type %q raw %q body %q", m.Type, m.Raw, m.Body)
		}
		if off+len(m.Raw) > len(data) || !bytes.Equal(m.Raw, data[off:off+len(m.Raw)]) {
			t.Fatalf("message at offset %d is not the input's bytes", off)
		}
		off += len(m.Raw)
		out.raws = append(out.raws, bytes.Clone(m.Raw))
		fr.shrink()
	}
	t.Fatalf("reader did not stop after %d reads of %d bytes", len(data)+2, len(data))
	return out
}

// frameSizes are the read buffer sizes fuzzed: small ones (to reach the
// spill path with small inputs) and the two the sessions use.
var frameSizes = []int{64, 100, clientReadBuffer, serverReadBuffer}

// FuzzFrameReader: for any bytes and a small limit, frameReader.next never
// panics, never returns a message longer than the limit, frames exactly the
// input's bytes, ends with EOF only at a message boundary, and frames the
// same way whether the bytes come at once or one at a time.
func FuzzFrameReader(f *testing.F) {
	var pipeline []byte
	pipeline = append(pipeline, fuzzMsg('P', "s1\x00select $1\x00\x00\x01\x00\x00\x00\x17")...)
	pipeline = append(pipeline, fuzzMsg('B', "\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00")...)
	pipeline = append(pipeline, fuzzMsg('E', "\x00\x00\x00\x00\x00")...)
	pipeline = append(pipeline, fuzzMsg('S', "")...)
	f.Add(pipeline, uint16(60))
	f.Add(fuzzMsg('Q', "select 1\x00"), uint16(100))
	f.Add(fuzzMsg('Q', "select 1\x00"), uint16(5))                                              // over the limit
	f.Add([]byte{'Q', 0, 0, 0, 3}, uint16(100))                                                 // length below 4
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff, 'x'}, uint16(100))                                // huge length
	f.Add([]byte{'Q', 0, 0, 0, 9, 's', 'e'}, uint16(100))                                       // truncated body
	f.Add([]byte{'X', 0, 0}, uint16(100))                                                       // truncated header
	f.Add(append(fuzzMsg('d', strings.Repeat("r", 20000)), fuzzMsg('c', "")...), uint16(30000)) // spill path
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		// The low bits of max also choose the buffer size and how many
		// bytes are taken raw first (as the startup packet is).
		limit := 4 + int(max)
		size := frameSizes[int(max)%len(frameSizes)]
		skip := 0
		if len(data) > 0 {
			skip = int(max>>2) % (len(data) + 1) % 16
		}
		whole := readFrames(t, bytes.NewReader(data), data, size, limit, skip)
		bytewise := readFrames(t, iotest.OneByteReader(bytes.NewReader(data)), data, size, limit, skip)
		halves := readFrames(t, iotest.HalfReader(bytes.NewReader(data)), data, size, limit, skip)
		if halves.end != whole.end || len(halves.raws) != len(whole.raws) {
			t.Fatalf("read at once: %d messages then %s; by halves: %d then %s", len(whole.raws), whole.end, len(halves.raws), halves.end)
		}
		if whole.end != bytewise.end || len(whole.raws) != len(bytewise.raws) {
			t.Fatalf("read at once: %d messages then %s; byte by byte: %d then %s", len(whole.raws), whole.end, len(bytewise.raws), bytewise.end)
		}
		for i := range whole.raws {
			if !bytes.Equal(whole.raws[i], bytewise.raws[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

// encodeStartupParams is the body of a StartupMessage after the version.
func encodeStartupParams(params map[string]string) []byte {
	var b []byte
	for _, k := range slices.Sorted(mapsKeys(params)) {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, params[k]...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// FuzzDecodeStartupParams: decodeStartupParams never panics; what it
// accepts names a user, encodes back to what decodes the same, and agrees
// with pgproto3's StartupMessage decoder; startupSettings of it never
// panics either.
func FuzzDecodeStartupParams(f *testing.F) {
	f.Add([]byte("user\x00app\x00database\x00app\x00\x00"))
	f.Add([]byte("user\x00app\x00options\x00-c search_path=a,b --statement-timeout=5s\x00\x00"))
	f.Add([]byte("user\x00app\x00application_name\x00psql\x00client_encoding\x00UTF8\x00_pq_.x\x00y\x00\x00"))
	f.Add([]byte("user\x00\x00\x00"))
	f.Add([]byte("user\x00app\x00"))
	f.Add([]byte("user\x00app\x00\x00trailing"))
	f.Add([]byte("\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := decodeStartupParams(body)
		if err != nil {
			if params != nil {
				t.Fatalf("params %v with error %v", params, err)
			}
			return
		}
		if params["user"] == "" {
			t.Fatalf("accepted %q without a user", body)
		}
		again, err := decodeStartupParams(encodeStartupParams(params))
		if err != nil || len(again) != len(params) {
			t.Fatalf("re-encoded params: %v %v, first %v", again, err, params)
		}
		for k, v := range params {
			if again[k] != v {
				t.Fatalf("re-encoded %q: %q, want %q", k, again[k], v)
			}
		}
		var sm pgproto3.StartupMessage
		full := binary.BigEndian.AppendUint32(nil, pgproto3.ProtocolVersion30)
		if err := sm.Decode(append(full, body...)); err != nil {
			t.Fatalf("pgproto3 refuses what Outrigger accepted (%v): %q", err, body)
		}
		for k, v := range params {
			if sm.Parameters[k] != v {
				t.Fatalf("pgproto3 decodes %q as %q, Outrigger as %q", k, sm.Parameters[k], v)
			}
		}
		st, err := startupSettings(params)
		if err == nil {
			checkSettings(t, st)
		}
	})
}

// plainParam is a parameter name the way Postgres writes a GUC: words of
// lower-case letters, digits and underscores, dotted for placeholders.
var plainParam = regexp.MustCompile(`^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)*$`)

// checkSettings: every setting is one SET statement for its own name, and
// diffSQL between it and nothing works both ways. A setting whose name is
// an ordinary parameter name must parse as exactly that one SET: no value
// or name may break out of its quotes.
func checkSettings(t *testing.T, st *settings) {
	t.Helper()
	for name, stmt := range st.m {
		if !strings.HasPrefix(stmt, "SELECT pg_catalog.set_config(") {
			t.Fatalf("setting %q is %q", name, stmt)
		}
		if !plainParam.MatchString(name) || !utf8.ValidString(stmt) || strings.IndexByte(stmt, 0) >= 0 || len(stmt) > 4000 {
			continue
		}
		if longPart(name) {
			// SQL truncates identifiers to 63 bytes (NAMEDATALEN); a
			// longer startup parameter name is replayed truncated.
			continue
		}
		switch name {
		case "role", "session_authorization", "transaction_isolation", "transaction_read_only", "transaction_deferrable":
			continue // the classifier treats these SETs specially, by design
		}
		res := classify.Classify(stmt)
		if res.Err != nil || len(res.Statements) != 1 {
			t.Fatalf("setting %q: %q parses as %d statements (%v)", name, stmt, len(res.Statements), res.Err)
		}
		effects := res.Statements[0].Effects
		if len(effects) != 1 || effects[0].Kind != classify.EffectSet || effects[0].Name != name {
			t.Fatalf("setting %q: %q has effects %+v", name, stmt, effects)
		}
	}
	_ = diffSQL(emptySettings, st)
	_ = diffSQL(st, emptySettings)
	_ = diffSQL(unknownSettings, st)
}

func longPart(name string) bool {
	for _, p := range strings.Split(name, ".") {
		if len(p) > 63 {
			return true
		}
	}
	return false
}

// FuzzStartupSettings: startupSettings never panics on any run-time
// parameter or options string, and what it returns is checked as above.
func FuzzStartupSettings(f *testing.F) {
	f.Add("app", "-c search_path=a,b", "application_name", "psql")
	f.Add("app", "-csearch_path=x --work-mem=64MB", "TimeZone", "UTC")
	f.Add("app", `-c search_path=it\'s\ quoted`, "datestyle", "ISO, MDY")
	f.Add("app", "-c", "x.y", `a\b'c`)
	f.Add("app", "--=x -c =y", "", "")
	f.Add("app", "-D /tmp", "extra_float_digits", "3")
	f.Add("app", `\`, "a.", "b")
	f.Fuzz(func(t *testing.T, user, options, k, v string) {
		if strings.IndexByte(user+options+k+v, 0) >= 0 {
			return // startup parameters are NUL-terminated on the wire
		}
		params := map[string]string{"user": user, "database": "app", "options": options}
		if k != "" {
			params[k] = v
		}
		st, err := startupSettings(params)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !e.Fatal || len(e.Code) != 5 {
				t.Fatalf("error %v (%T) is not a fatal client error", err, err)
			}
			return
		}
		checkSettings(t, st)
		_ = splitOptions(options)
	})
}

// FuzzExtendedBodies splits a body the way the session does for Parse,
// Bind, Describe, Close and Execute: never a panic; what splits rebuilds
// (under a shared statement name too) into a message that splits the
// same; and whatever pgproto3 can decode, Outrigger splits the same way.
func FuzzExtendedBodies(f *testing.F) {
	f.Add([]byte("s1\x00select $1::int\x00\x00\x01\x00\x00\x00\x17"))
	f.Add([]byte("\x00select 1\x00\x00\x00"))
	f.Add([]byte("p\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x00"))
	f.Add([]byte("Ss1\x00"))
	f.Add([]byte("P\x00"))
	f.Add([]byte("no terminator"))
	f.Add([]byte("\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		// Parse: name, query, parameter types.
		name, rest, ok1 := cstring(body)
		query, types, ok2 := cstring(rest)
		var pp pgproto3.Parse
		if pp.Decode(body) == nil {
			if !ok1 || !ok2 || string(name) != pp.Name || string(query) != pp.Query {
				t.Fatalf("Parse %q: pgproto3 %q/%q, Outrigger %q/%q (%v %v)", body, pp.Name, pp.Query, name, query, ok1, ok2)
			}
		}
		if ok1 && ok2 {
			if got := appendMsg(nil, 'P', name, []byte{0}, query, []byte{0}, types); !bytes.Equal(got[5:], body) || int(binary.BigEndian.Uint32(got[1:5])) != len(body)+4 {
				t.Fatalf("Parse %q rebuilt as %q", body, got)
			}
			shared := sharedName(query, types, 0)
			if shared != sharedName(bytes.Clone(query), bytes.Clone(types), 0) || strings.IndexByte(shared, 0) >= 0 || len(shared) >= 64 {
				t.Fatalf("shared name %q", shared)
			}
			renamed := appendMsg(nil, 'P', []byte(shared), []byte{0}, query, []byte{0}, types)
			n2, r2, ok := cstring(renamed[5:])
			q2, t2, ok2 := cstring(r2)
			if !ok || !ok2 || string(n2) != shared || !bytes.Equal(q2, query) || !bytes.Equal(t2, types) {
				t.Fatalf("renamed Parse splits as %q %q %q", n2, q2, t2)
			}
			_ = beginsTransaction(query)
		}

		// Bind: portal, statement, the rest passed on as it is.
		portal, rest, ok1 := cstring(body)
		stmt, params, ok2 := cstring(rest)
		var bd pgproto3.Bind
		if bd.Decode(body) == nil {
			if !ok1 || !ok2 || string(portal) != bd.DestinationPortal || string(stmt) != bd.PreparedStatement {
				t.Fatalf("Bind %q: pgproto3 %q/%q, Outrigger %q/%q", body, bd.DestinationPortal, bd.PreparedStatement, portal, stmt)
			}
		}
		if ok1 && ok2 {
			shared := sharedName(stmt, nil, 0)
			renamed := appendMsg(nil, 'B', portal, []byte{0}, []byte(shared), []byte{0}, params)
			p2, r2, ok := cstring(renamed[5:])
			s2, rest2, ok2 := cstring(r2)
			if !ok || !ok2 || !bytes.Equal(p2, portal) || string(s2) != shared || !bytes.Equal(rest2, params) {
				t.Fatalf("renamed Bind splits as %q %q %q", p2, s2, rest2)
			}
			var bd2 pgproto3.Bind
			if bd.Decode(body) == nil && (bd2.Decode(renamed[5:]) != nil || len(bd2.Parameters) != len(bd.Parameters)) {
				t.Fatalf("renamed Bind no longer decodes like the original")
			}
		}

		// Describe and Close: a kind byte and a name; Execute: a portal.
		if len(body) >= 2 {
			_, _, _ = cstring(body[1:])
		}
		_, _, _ = cstring(body)

		// Other decoders of untrusted bodies.
		_ = isFatal(body)
		(&server{}).noteParameter(body)
		_ = trimNul(body)
		_ = quoteType(byte(len(body)))
	})
}
