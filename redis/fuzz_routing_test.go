package redis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/outrigger/outrigger/config"
)

// FuzzCommandRouting feeds arbitrary client bytes to a CommandReader the
// way session.run does and puts every command it reads through the command
// table (Lookup, CheckArity, Keys, IsBlocking) and through routeModel, a
// pure copy of session.dispatch's routing decisions. It reads the input
// twice: whole, with a 64 KiB limit, and in small misaligned pieces with the
// smallest max_command_bytes the configuration allows (1024), to exercise
// the limit path and split reads. Properties:
//
//   - nothing panics; the reader's buffer stays within twice the limit plus
//     slack; ErrCommandTooLarge comes only from the limit;
//   - either reading's commands are a prefix of the other's;
//   - a command has arguments, and its Raw is exactly the canonical RESP
//     encoding of its arguments (what goes upstream is framed as Redis
//     requires);
//   - Lookup agrees with a plain lower-cased map lookup, ignores the case of
//     the command and subcommand names, and modifies nothing;
//   - every key Keys returns is one of the command's arguments (the same
//     bytes, not a copy), never the name; Keys keeps what dst held, does not
//     reallocate a dst with room, and finds the same argument positions when
//     every argument's ASCII case is changed (as does IsBlocking);
//   - a command whose reply is not exactly one frame never goes to a
//     request/reply connection, whose replies are matched to requests in
//     order (notOneReply);
//   - passthrough, once entered, lasts; routing ignores ASCII case.
func FuzzCommandRouting(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := readClient(t, bytes.NewReader(data), 64<<10)
		first, size := 1+len(data)%5, 3+len(data)%29
		split := readClient(t, &pieceReader{r: bytes.NewReader(data), first: first, size: size}, 1024)

		short, long := whole.cmds, split.cmds
		if len(short) > len(long) {
			short, long = long, short
		}
		for i := range short {
			if !bytes.Equal(short[i].Raw, long[i].Raw) || !equalArgs(short[i].Args, long[i].Args) {
				t.Fatalf("command %d: whole reading %q, split reading %q", i, whole.cmds[i].Raw, split.cmds[i].Raw)
			}
		}

		var dst [][]byte // reused from command to command, as a caller would
		for _, r := range []readResult{whole, split} {
			for _, cmd := range r.cmds {
				dst = checkCommand(t, cmd, dst)
			}
		}
		if known := checkRouting(t, long); len(known) > 0 {
			t.Fatal(strings.Join(known, "\n"))
		}
	})
}

type readResult struct {
	cmds []Cmd // copies: a Cmd is only valid until the reader's next call
	err  error
}

// readClient reads commands from r as session.run does, until an error.
func readClient(t *testing.T, r io.Reader, max int) readResult {
	t.Helper()
	cr := NewCommandReader(r, max)
	var res readResult
	for {
		cmd, err := cr.Next()
		if c := cap(cr.rr.buf); c > 2*max+2*MaxInline+8192 {
			t.Fatalf("reader buffer grew to %d bytes with a limit of %d", c, max)
		}
		if err != nil {
			if errors.Is(err, ErrCommandTooLarge) && !errors.Is(err, ErrReplyLimit) {
				t.Fatalf("ErrCommandTooLarge without a limit behind it: %v", err)
			}
			res.err = err
			return res
		}
		res.cmds = append(res.cmds, Cmd{Raw: bytes.Clone(cmd.Raw), Args: cloneArgs(cmd.Args)})
	}
}

// pieceReader hands out first bytes, then size bytes at a time: the way a
// network connection may split a client's stream.
type pieceReader struct {
	r           io.Reader
	first, size int
	reads       int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	n := p.size
	if p.reads == 0 {
		n = p.first
	}
	p.reads++
	if len(b) > n {
		b = b[:n]
	}
	return p.r.Read(b)
}

// checkCommand checks one command against the table functions and returns
// dst, the reused key slice.
func checkCommand(t *testing.T, cmd Cmd, dst [][]byte) [][]byte {
	t.Helper()
	args := cmd.Args
	if len(args) == 0 {
		t.Fatalf("a command with no arguments: raw %q", cmd.Raw)
	}
	before := cloneArgs(args)

	if want := encodeCommand(args); !bytes.Equal(cmd.Raw, want) {
		t.Fatalf("Raw %q is not the canonical encoding %q of the arguments", cmd.Raw, want)
	}

	// Lookup, against a plain map lookup and under changes of case.
	c := Lookup(args)
	if want := refLookup(args); c != want {
		t.Fatalf("Lookup(%q) = %v, want %v", args, cmdName(c), cmdName(want))
	}
	for _, v := range nameVariants(args) {
		if got := Lookup(v); got != c {
			t.Fatalf("Lookup(%q) = %v, but Lookup(%q) = %v", v[:min(len(v), 2)], cmdName(got), args[:min(len(args), 2)], cmdName(c))
		}
	}
	if c != nil {
		want := len(args) >= -c.Arity
		if c.Arity >= 0 {
			want = len(args) == c.Arity
		}
		if c.CheckArity(len(args)) != want {
			t.Fatalf("%s (arity %d).CheckArity(%d) = %v", c.Name, c.Arity, len(args), !want)
		}
	}

	// Keys: the arguments themselves, with a reused dst.
	dst = c.Keys(args, dst[:0])
	for i, k := range dst {
		if argIndex(args, k) < 1 {
			t.Fatalf("%s: key %d %q is not one of the arguments after the name %q", cmdName(c), i, k, args)
		}
	}
	// With a prefix in dst, and with room to spare.
	pre := [][]byte{[]byte("prefix-0"), []byte("prefix-1")}
	room := make([][]byte, len(pre), len(pre)+(len(argKeySpecs(c))+1)*len(args)+1)
	copy(room, pre)
	out := c.Keys(args, room)
	if len(out) != len(pre)+len(dst) || !bytes.Equal(out[0], pre[0]) || !bytes.Equal(out[1], pre[1]) {
		t.Fatalf("%s: Keys with 2 entries in dst = %q, with none %q", cmdName(c), out, dst)
	}
	for i := range dst {
		if !sameBytes(out[len(pre)+i], dst[i]) {
			t.Fatalf("%s: Keys with 2 entries in dst = %q, with none %q", cmdName(c), out, dst)
		}
	}
	if unsafe.SliceData(out) != unsafe.SliceData(room) {
		t.Fatalf("%s: Keys reallocated a dst with room for %d keys (%d found)", cmdName(c), cap(room)-len(pre), len(dst))
	}

	// Key positions and IsBlocking ignore the case of every argument.
	blocking := IsBlocking(c, args)
	if blocking && !(c.Flags&FlagBlocking != 0 || isOneOf(c.Name, "xread", "xreadgroup", "wait", "waitaof")) {
		t.Fatalf("IsBlocking(%s) without the blocking flag", c.Name)
	}
	plain, folded := distinctCopy(args, asciiLower), distinctCopy(args, asciiUpper)
	pk, fk := keyPositions(t, c, plain), keyPositions(t, c, folded)
	if !equalInts(pk, fk) {
		t.Fatalf("%s: key positions %v in %q, but %v in %q", cmdName(c), pk, plain, fk, folded)
	}
	if len(pk) != len(dst) {
		t.Fatalf("%s: %d keys in %q, %d in a copy", cmdName(c), len(dst), args, len(pk))
	}
	for i, p := range pk {
		if !bytes.Equal(asciiLower(dst[i]), plain[p]) {
			t.Fatalf("%s: key %d is %q, in a copy the argument %d", cmdName(c), i, dst[i], p)
		}
	}
	if IsBlocking(c, plain) != blocking || IsBlocking(c, folded) != blocking {
		t.Fatalf("%s: IsBlocking depends on the case of %q", cmdName(c), args)
	}

	if !equalArgs(args, before) {
		t.Fatalf("the table functions modified the command: %q, was %q", args, before)
	}
	return dst
}

// keyPositions returns the argument index of each key of args.
func keyPositions(t *testing.T, c *Command, args [][]byte) []int {
	t.Helper()
	var pos []int
	for _, k := range c.Keys(args, nil) {
		i := argIndex(args, k)
		if i < 1 {
			t.Fatalf("%s: key %q is not one of the arguments after the name", cmdName(c), k)
		}
		pos = append(pos, i)
	}
	return pos
}

// argIndex returns the index of the argument that k is (the same bytes, not
// an equal copy), or -1.
func argIndex(args [][]byte, k []byte) int {
	for i, a := range args {
		if sameBytes(a, k) {
			return i
		}
	}
	return -1
}

func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

func argKeySpecs(c *Command) []KeySpec {
	if c == nil {
		return nil
	}
	return c.KeySpecs
}

// refLookup is Lookup written plainly: lower-case the names, index the maps.
func refLookup(args [][]byte) *Command {
	if len(args) == 0 {
		return nil
	}
	c := commandTable[string(asciiLower(args[0]))]
	if c != nil && c.Subcommands != nil && len(args) >= 2 {
		if sub := c.Subcommands[string(asciiLower(args[1]))]; sub != nil {
			return sub
		}
	}
	return c
}

// nameVariants returns args with the command and subcommand names in upper,
// lower and alternating case.
func nameVariants(args [][]byte) [][][]byte {
	var out [][][]byte
	for _, f := range []func([]byte) []byte{asciiUpper, asciiLower, asciiAlternate} {
		v := append([][]byte(nil), args...)
		v[0] = f(v[0])
		if len(v) > 1 {
			v[1] = f(v[1])
		}
		out = append(out, v)
	}
	return out
}

func asciiUpper(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func asciiAlternate(b []byte) []byte {
	out := asciiLower(b)
	for i := 0; i < len(out); i += 2 {
		if 'a' <= out[i] && out[i] <= 'z' {
			out[i] -= 'a' - 'A'
		}
	}
	return out
}

// distinctCopy copies args through f into one buffer, one byte apart, so
// that every argument, even an empty one, has its own address.
func distinctCopy(args [][]byte, f func([]byte) []byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a) + 1
	}
	buf := make([]byte, n)
	out := make([][]byte, len(args))
	off := 0
	for i, a := range args {
		out[i] = buf[off : off+len(a) : off+len(a)]
		copy(out[i], f(a))
		off += len(a) + 1
	}
	return out
}

func cloneArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = bytes.Clone(a)
	}
	return out
}

func equalArgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isOneOf(s string, names ...string) bool {
	for _, n := range names {
		if s == n {
			return true
		}
	}
	return false
}

func cmdName(c *Command) string {
	if c == nil {
		return "<unknown>"
	}
	return c.Name
}

// route is where session.dispatch sends a command.
type route uint8

const (
	routeShared      route = iota // the client's shared upstream connection
	routePinned                   // its pinned connection (taken first if need be)
	routePassthrough              // a pinned connection in passthrough, entered or already in
	routeLocal                    // answered by the session (which may send a re-encoded command)
	routeRefused                  // refused by the proxy
	routeQuit                     // QUIT: the session ends
)

func (r route) String() string {
	return [...]string{"shared", "pinned", "passthrough", "local", "refused", "quit"}[r]
}

// decision is routeModel's account of one command.
type decision struct {
	route  route
	reason string // the pin reason, when the command pins a connection
	// forwardsRaw: cmd.Raw goes upstream as the client sent it.
	forwardsRaw bool
	// requestReply: the connection matches replies to commands in order,
	// one frame each.
	requestReply bool
}

// routeModel is session.dispatch's routing with the I/O taken out: it
// assumes every pin and every upstream succeeds. It mirrors the switch in
// dispatch, and must change with it.
type routeModel struct {
	refused                                                    map[*Command]bool
	passthrough, pinned, inMulti, watching, releaseAfter, quit bool
}

// defaultRefused is the default refuse_commands (from config.Redis's
// default tag), resolved as NewHandler resolves it.
func defaultRefused(t *testing.T) map[*Command]bool {
	t.Helper()
	f, ok := reflect.TypeOf(config.Redis{}).FieldByName("RefuseCommands")
	tag := strings.TrimSpace(f.Tag.Get("default"))
	if !ok || !strings.HasPrefix(tag, "[") || !strings.HasSuffix(tag, "]") {
		t.Fatalf("config.Redis.RefuseCommands has no default list: %q", tag)
	}
	m := map[*Command]bool{}
	for _, name := range strings.Split(tag[1:len(tag)-1], ",") {
		name = strings.TrimSpace(name)
		var args [][]byte
		for _, part := range strings.Split(name, "|") {
			args = append(args, []byte(part))
		}
		c := Lookup(args)
		if c == nil || !strings.EqualFold(c.Name, name) {
			t.Fatalf("refuse_commands default: unknown command %q", name)
		}
		m[c] = true
	}
	return m
}

func (m *routeModel) unpin() {
	m.pinned, m.inMulti, m.watching, m.releaseAfter = false, false, false, false
}

func (m *routeModel) dispatch(c *Command, args [][]byte) decision {
	if m.passthrough {
		if c != nil && m.refused[c] {
			return decision{route: routeRefused}
		}
		return decision{route: routePassthrough, forwardsRaw: true}
	}
	if m.releaseAfter {
		m.unpin()
	}
	if c != nil && m.refused[c] {
		return decision{route: routeRefused}
	}
	switch cmdNameOrEmpty(c) {
	case "quit":
		m.quit = true
		return decision{route: routeQuit}
	case "select", "auth", "hello", "client|setname", "client|getname", "client|id", "client|info", "client|setinfo":
		return decision{route: routeLocal}
	case "reset":
		m.unpin()
		return decision{route: routeLocal}
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		return decision{route: routeLocal}
	case "subscribe", "psubscribe", "ssubscribe":
		return m.startPassthrough(pinPubSub)
	case "monitor":
		return m.startPassthrough(pinMonitor)
	case "client|reply", "client|tracking":
		return m.startPassthrough(pinClientMode)
	}
	reason := ""
	switch cmdNameOrEmpty(c) {
	case "multi":
		if !m.pinned {
			m.pinned, reason = true, pinTransaction
		}
		m.inMulti = true
	case "watch":
		if !m.pinned {
			m.pinned, reason = true, pinWatch
		}
		m.watching = true
	case "exec", "discard":
		if m.pinned {
			m.inMulti, m.watching = false, false
			m.releaseAfter = true
		}
	case "unwatch":
		if m.pinned && !m.inMulti {
			m.watching = false
			m.releaseAfter = true
		}
	}
	if m.pinned {
		return decision{route: routePinned, reason: reason, forwardsRaw: true, requestReply: true}
	}
	if c != nil && IsBlocking(c, args) {
		m.pinned, m.releaseAfter = true, true
		return decision{route: routePinned, reason: pinBlocking, forwardsRaw: true, requestReply: true}
	}
	return decision{route: routeShared, forwardsRaw: true, requestReply: true}
}

func (m *routeModel) startPassthrough(reason string) decision {
	d := decision{route: routePassthrough, forwardsRaw: true}
	if !m.pinned {
		d.reason = reason
	}
	m.pinned, m.passthrough = true, true
	return d
}

func cmdNameOrEmpty(c *Command) string {
	if c == nil {
		return ""
	}
	return c.Name
}

// notOneReply are the commands whose answer is not exactly one frame, so
// that on a connection whose replies are matched to requests in order they
// shift every later reply onto the wrong request (another client's, on a
// shared connection; the next borrower's, on a pinned one given back).
var notOneReply = map[string]string{
	"subscribe":    "one reply per channel, then messages",
	"psubscribe":   "one reply per pattern, then messages",
	"ssubscribe":   "one reply per shard channel, then messages",
	"unsubscribe":  "one reply per channel named, even when not subscribed",
	"punsubscribe": "one reply per pattern named, even when not subscribed",
	"sunsubscribe": "one reply per shard channel named, even when not subscribed",
	"monitor":      "a stream of monitor lines",
	"sync":         "an RDB payload without a closing CRLF, then the replication stream",
	"psync":        "+FULLRESYNC, an RDB payload without a closing CRLF, then the replication stream",
	"client|reply": "no reply at all after OFF or SKIP",
}

// checkRouting routes cmds through a routeModel, and the same commands with
// every argument in upper case through another. It returns the violations
// of properties that known bugs in session.dispatch break.
func checkRouting(t *testing.T, cmds []Cmd) (known []string) {
	t.Helper()
	refused := defaultRefused(t)
	m, mf := &routeModel{refused: refused}, &routeModel{refused: refused}
	for i, cmd := range cmds {
		if m.quit {
			return known
		}
		c := Lookup(cmd.Args)
		wasPassthrough := m.passthrough
		d := m.dispatch(c, cmd.Args)
		folded := distinctCopy(cmd.Args, asciiUpper)
		if df := mf.dispatch(Lookup(folded), folded); df != d {
			t.Fatalf("command %d %q routes %+v, in upper case %+v", i, cmd.Args, d, df)
		}
		if wasPassthrough && d.route != routePassthrough && d.route != routeRefused {
			t.Fatalf("command %d %q leaves passthrough: %v", i, cmd.Args, d.route)
		}
		if d.route == routeShared && c != nil && IsBlocking(c, cmd.Args) {
			t.Fatalf("blocking command %d %q goes to a shared connection", i, cmd.Args)
		}
		if why, ok := notOneReply[cmdNameOrEmpty(c)]; ok && d.requestReply {
			known = append(known, fmt.Sprintf("command %d %q goes to a %s request/reply connection, but its answer is %s: "+
				"the replies after it go to the wrong requests (session.dispatch)", i, cmd.Args, d.route, why))
		}
	}
	return known
}

// encodeCommand frames args the only way Redis accepts: decimal lengths
// without sign or leading zeros.
func encodeCommand(args [][]byte) []byte {
	b := append([]byte{'*'}, strconv.Itoa(len(args))...)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
