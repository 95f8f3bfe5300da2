package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestPGDiff proves sameness differentially: generated extended-protocol
// conversations (Parse, Bind, Describe, Execute, Close, Flush, Sync and
// simple Queries, some failing, some arriving in pieces) go to Postgres
// directly and through Outrigger in session mode, transaction mode with a
// pool of 1, and transaction mode with a pool of 2 that other clients use
// at the same time. The reply streams must be equal byte for byte once
// Outrigger's shared statement names are masked.
//
// PGDIFF_N (default 2000) conversations run from PGDIFF_SEED (default 1);
// PGDIFF_DURATION (such as 30m, `make fuzz-pg`) keeps generating new ones
// until the time is up. The named regressions of pgDiffRegressions run
// first.
func TestPGDiff(t *testing.T) {
	integrationOnly(t)
	n, _ := strconv.Atoi(os.Getenv("PGDIFF_N"))
	if n <= 0 {
		n = 2000
	}
	seed, _ := strconv.ParseUint(os.Getenv("PGDIFF_SEED"), 10, 64)
	if seed == 0 {
		seed = 1
	}
	var until time.Time
	if d, err := time.ParseDuration(os.Getenv("PGDIFF_DURATION")); err == nil && d > 0 {
		until = time.Now().Add(d)
	}

	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	ctx := testCtx(t, 2*time.Hour)
	setup, err := pgx.Connect(ctx, pg.DSN("app", "app", "app"))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(ctx, t, setup, "create table dt (id int primary key, v text)")
	mustExec(ctx, t, setup, "insert into dt select g, 'v' || g from generate_series(1, 6) g")
	setup.Close(ctx)

	listen := map[string]string{"session": testenv.FreeAddr(t), "tx1": testenv.FreeAddr(t), "tx2": testenv.FreeAddr(t)}
	var cfg strings.Builder
	cfg.WriteString("admin: {listen: \"127.0.0.1:0\"}\npostgres:\n")
	for _, l := range []struct {
		name, mode string
		size       int
	}{{"session", "session", 2}, {"tx1", "transaction", 1}, {"tx2", "transaction", 2}} {
		fmt.Fprintf(&cfg, `  - name: %s
    listen: %q
    upstream: {address: %q}
    pool: {mode: %s, size: %d, acquire_timeout: 20s}
    auth:
      method: scram-sha-256
      users:
        - {name: app, password: app}
`, l.name, listen[l.name], pg.Addr(), l.mode, l.size)
	}
	o := startOutrigger(t, cfg.String())
	dsnOf := func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("host=%s port=%s user=app password=app dbname=app sslmode=disable", host, port)
	}
	targets := []diffTarget{
		{name: "direct", dsn: pg.DSN("app", "app", "app")},
		{name: "session", dsn: dsnOf(listen["session"])},
		{name: "transaction-pool-1", dsn: dsnOf(listen["tx1"])},
		{name: "transaction-pool-2", dsn: dsnOf(listen["tx2"])},
	}

	// Other clients share the pool of 2 throughout.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for i := range 2 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			c, err := pgx.Connect(ctx, dsnOf(listen["tx2"]))
			if err != nil {
				t.Errorf("background client: %v", err)
				return
			}
			defer c.Close(context.Background())
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				var v int
				if err := c.QueryRow(ctx, "select $1::int + "+strconv.Itoa(i), k).Scan(&v); err != nil {
					t.Errorf("background client: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() { close(stop); bg.Wait() })

	var conns [4]*diffConn
	var history []string // the conversations since the sessions began
	connectAll := func() {
		history = history[:0]
		for i := range targets {
			if conns[i] != nil {
				conns[i].close()
			}
			conns[i] = dialDiff(ctx, t, targets[i])
		}
	}
	connectAll()
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	run := func(name string, conv []diffStep) bool {
		defer func() { history = append(history, name+":\n"+describeConv(conv)) }()
		var want []byte
		for i, c := range conns {
			got, err := c.run(conv)
			if err != nil {
				t.Errorf("%s: %s: %v\nconversation:\n%s\nreplies so far:\n%s\n%s", name, targets[i].name, err, describeConv(conv), describeReplies(got), o.Logs)
				connectAll()
				return false
			}
			if i == 0 {
				want = got
				continue
			}
			if !bytes.Equal(maskShared(want), maskShared(got)) {
				t.Errorf("%s: %s differs from direct\nearlier on these sessions:\n%s\nconversation:\n%s\ndirect:\n%s\n%s:\n%s", name, targets[i].name, strings.Join(history, ""), describeConv(conv), describeReplies(want), targets[i].name, describeReplies(got))
				connectAll()
				return false
			}
		}
		return true
	}
	for _, r := range pgDiffRegressions {
		run(r.name, r.conv)
	}
	convs, msgs, failed := 0, 0, 0
	start := time.Now()
	for i := 0; i < n || time.Now().Before(until); i++ {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		conv := genConversation(rng)
		convs++
		msgs += len(conv)
		if !run(fmt.Sprintf("seed %d conversation %d", seed, i), conv) {
			failed++
			if failed >= 5 {
				break
			}
		}
		if i > 0 && i%8 == 0 {
			connectAll() // fresh sessions now and then, as apps reconnect
		}
	}
	t.Logf("%d conversations, %d messages, %d differences, in %s", convs, msgs, failed, time.Since(start).Round(time.Second))
}

// diffStep is one message to send, or a pause before the next write.
type diffStep struct {
	msg   pgproto3.FrontendMessage
	pause time.Duration
}

type diffTarget struct{ name, dsn string }

// diffConn is a raw protocol connection after login.
type diffConn struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialDiff(ctx context.Context, t *testing.T, target diffTarget) *diffConn {
	t.Helper()
	pc, err := pgconn.Connect(ctx, target.dsn)
	if err != nil {
		t.Fatalf("%s: %v", target.name, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	return &diffConn{t: t, conn: hc.Conn, fe: hc.Frontend}
}

func (c *diffConn) close() { _ = c.conn.Close() }

// endMarker is the query every conversation ends with, after its last
// Sync: its row tells the reader that every reply is in. Its COMMIT ends
// a transaction the conversation left open (or aborted), so the marker
// runs in any state.
const endMarker = "commit; select 'end of conversation'"

// run sends conv, then the end marker, and returns every reply up to the
// marker's ReadyForQuery, each message encoded again.
func (c *diffConn) run(conv []diffStep) ([]byte, error) {
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	var out []byte
	errc := make(chan error, 1)
	go func() {
		// The writer: pauses split the conversation into separate writes.
		for _, st := range conv {
			if st.pause > 0 {
				if err := c.fe.Flush(); err != nil {
					errc <- err
					return
				}
				time.Sleep(st.pause)
				continue
			}
			c.fe.Send(st.msg)
		}
		c.fe.Send(&pgproto3.Query{String: endMarker})
		errc <- c.fe.Flush()
	}()
	sawMarker := false
	for {
		m, err := c.fe.Receive()
		if err != nil {
			<-errc
			return out, err
		}
		b, err := m.Encode(nil)
		if err != nil {
			return out, err
		}
		if dr, ok := m.(*pgproto3.DataRow); ok && len(dr.Values) == 1 && string(dr.Values[0]) == "end of conversation" {
			sawMarker = true
		}
		out = append(out, b...)
		if _, ok := m.(*pgproto3.ReadyForQuery); ok && sawMarker {
			return out, <-errc
		}
	}
}

var sharedNameRE = regexp.MustCompile(`_or_[0-9a-f]+`)

// maskShared hides Outrigger's shared statement names. A masked message
// changes length, so lengths are masked with it: the streams are compared
// as text with the names replaced.
func maskShared(b []byte) []byte { return sharedNameRE.ReplaceAll(b, []byte("_or_*")) }

// The generator's vocabulary: statements that succeed, fail to parse, fail
// to bind and fail while running; all deterministic.
var (
	diffNames   = []string{"", "", "s1", "s2", "s3"}
	diffPortals = []string{"", "", "p1"}
	diffParses  = []struct {
		sql    string
		params int
		oids   []uint32
	}{
		{"select 1", 0, nil},
		{"select $1::int + 1", 1, nil},
		{"select $1 + 10", 1, []uint32{23}},
		{"select id, v from dt where id <= $1 order by id", 1, nil},
		{"select 1/(3-n) from generate_series(1,5) n", 0, nil},
		{"select generate_series(1, 4)", 0, nil},
		{"select $1::int, $2::text", 2, nil},
		{"selec 1", 0, nil},
		{"select * from nosuch", 0, nil},
		{"select v from dt where id = $1", 1, []uint32{25}},
	}
	diffQueries = []string{
		"select 1", "select 1/0", "select 1; select 2", "begin", "commit", "rollback",
		"select v from dt order by id limit 2", "selec", "select 1; select 1/0; select 3",
		"deallocate s1", "deallocate all", "show transaction_isolation",
	}
	diffParams = [][]byte{[]byte("2"), []byte("5"), []byte("x"), nil}
)

// genConversation makes one conversation; it always ends with Sync.
func genConversation(rng *rand.Rand) []diffStep {
	var conv []diffStep
	n := 1 + rng.IntN(14)
	for range n {
		if rng.IntN(12) == 0 {
			conv = append(conv, diffStep{pause: time.Duration(1+rng.IntN(8)) * time.Millisecond})
		}
		switch k := rng.IntN(100); {
		case k < 22:
			p := diffParses[rng.IntN(len(diffParses))]
			conv = append(conv, diffStep{msg: &pgproto3.Parse{Name: diffNames[rng.IntN(len(diffNames))], Query: p.sql, ParameterOIDs: p.oids}})
		case k < 42:
			params := 1
			switch rng.IntN(6) {
			case 0:
				params = 0
			case 1:
				params = 2
			}
			b := &pgproto3.Bind{DestinationPortal: diffPortals[rng.IntN(len(diffPortals))], PreparedStatement: diffNames[rng.IntN(len(diffNames))]}
			for range params {
				b.Parameters = append(b.Parameters, diffParams[rng.IntN(len(diffParams))])
			}
			conv = append(conv, diffStep{msg: b})
		case k < 52:
			if rng.IntN(2) == 0 {
				conv = append(conv, diffStep{msg: &pgproto3.Describe{ObjectType: 'S', Name: diffNames[rng.IntN(len(diffNames))]}})
			} else {
				conv = append(conv, diffStep{msg: &pgproto3.Describe{ObjectType: 'P', Name: diffPortals[rng.IntN(len(diffPortals))]}})
			}
		case k < 70:
			rows := uint32(0)
			if rng.IntN(4) == 0 {
				rows = 2
			}
			conv = append(conv, diffStep{msg: &pgproto3.Execute{Portal: diffPortals[rng.IntN(len(diffPortals))], MaxRows: rows}})
		case k < 76:
			if rng.IntN(2) == 0 {
				conv = append(conv, diffStep{msg: &pgproto3.Close{ObjectType: 'S', Name: diffNames[rng.IntN(len(diffNames))]}})
			} else {
				conv = append(conv, diffStep{msg: &pgproto3.Close{ObjectType: 'P', Name: diffPortals[rng.IntN(len(diffPortals))]}})
			}
		case k < 82:
			conv = append(conv, diffStep{msg: &pgproto3.Flush{}})
		case k < 92:
			conv = append(conv, diffStep{msg: &pgproto3.Sync{}})
		default:
			conv = append(conv, diffStep{msg: &pgproto3.Query{String: diffQueries[rng.IntN(len(diffQueries))]}})
		}
	}
	return append(conv, diffStep{msg: &pgproto3.Sync{}})
}

// pgDiffRegressions are conversations that once differed, by name.
var pgDiffRegressions = []struct {
	name string
	conv []diffStep
}{
	{"flush-then-error-then-more", []diffStep{
		{msg: &pgproto3.Parse{Query: "select 1"}}, {msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}},
		{msg: &pgproto3.Parse{Query: "select 1/(3-n) from generate_series(1,10) n"}}, {msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}},
		{msg: &pgproto3.Parse{Query: "select 3"}}, {msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}},
		{msg: &pgproto3.Flush{}}, {pause: 20 * time.Millisecond},
		{msg: &pgproto3.Parse{Name: "s_skipped", Query: "select 4"}}, {msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}},
		{msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Parse{Name: "s_skipped", Query: "select 4"}}, {msg: &pgproto3.Bind{PreparedStatement: "s_skipped"}}, {msg: &pgproto3.Execute{}},
		{msg: &pgproto3.Close{ObjectType: 'S', Name: "s_skipped"}}, {msg: &pgproto3.Sync{}},
	}},
	{"pipeline-prepare", []diffStep{
		{msg: &pgproto3.Parse{Name: "a1", Query: "select $1::int + 1"}}, {msg: &pgproto3.Describe{ObjectType: 'S', Name: "a1"}},
		{msg: &pgproto3.Parse{Name: "a2", Query: "select $1::int + 2"}}, {msg: &pgproto3.Describe{ObjectType: 'S', Name: "a2"}},
		{msg: &pgproto3.Sync{}}, {pause: 5 * time.Millisecond},
		{msg: &pgproto3.Bind{PreparedStatement: "a2", Parameters: [][]byte{[]byte("1")}}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Bind{PreparedStatement: "a1", Parameters: [][]byte{[]byte("1")}}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Close{ObjectType: 'S', Name: "a1"}}, {msg: &pgproto3.Close{ObjectType: 'S', Name: "a2"}}, {msg: &pgproto3.Sync{}},
	}},
	{"query-after-error-before-sync", []diffStep{
		{msg: &pgproto3.Parse{Query: "selec 1"}}, {msg: &pgproto3.Query{String: "select 1"}}, {msg: &pgproto3.Sync{}},
	}},
	{"unnamed-gone-after-query", []diffStep{
		{msg: &pgproto3.Parse{Query: "select 1"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "select 2"}},
		{msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
	}},
	{"bind-count-names-statement", []diffStep{
		{msg: &pgproto3.Parse{Name: "b1", Query: "select $1::int"}}, {msg: &pgproto3.Bind{PreparedStatement: "b1"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Parse{Name: "b1", Query: "select 2"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Bind{PreparedStatement: "nosuch"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "deallocate b1"}}, {msg: &pgproto3.Query{String: "deallocate b1"}},
	}},
	{"error-in-transaction-block", []diffStep{
		{msg: &pgproto3.Query{String: "begin"}},
		{msg: &pgproto3.Bind{PreparedStatement: "nosuch"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "select 1"}}, {msg: &pgproto3.Query{String: "rollback"}},
	}},
	// A Parse skipped after an error is not there for the next Sync's
	// messages, even when the server has that text prepared already.
	{"skipped-known-parse-then-describe", []diffStep{
		{msg: &pgproto3.Parse{Name: "k1", Query: "select $1::int, $2::text"}}, {msg: &pgproto3.Sync{}}, {pause: time.Millisecond},
		{msg: &pgproto3.Execute{}}, {msg: &pgproto3.Query{String: "deallocate k2"}},
		{msg: &pgproto3.Parse{Name: "k2", Query: "select $1::int, $2::text"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Describe{ObjectType: 'S', Name: "k2"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Close{ObjectType: 'S', Name: "k1"}}, {msg: &pgproto3.Sync{}},
	}},
	// In an aborted transaction Postgres refuses a Parse, even of a text
	// the server has prepared.
	{"known-parse-in-aborted-transaction", []diffStep{
		{msg: &pgproto3.Parse{Name: "a1", Query: "select 1 + 1"}}, {msg: &pgproto3.Sync{}}, {pause: time.Millisecond},
		{msg: &pgproto3.Query{String: "begin"}}, {msg: &pgproto3.Query{String: "select 1/0"}},
		{msg: &pgproto3.Parse{Name: "a2", Query: "select 1 + 1"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "rollback"}},
		{msg: &pgproto3.Describe{ObjectType: 'S', Name: "a2"}}, {msg: &pgproto3.Sync{}},
	}},
	// A Query sent before the answer to an earlier pipeline drops the
	// unnamed statement that pipeline made, whatever the pipeline's skips
	// give back.
	{"query-drops-unnamed-behind-a-skip", []diffStep{
		{msg: &pgproto3.Parse{Query: "select $1::int, $2::text"}}, {msg: &pgproto3.Bind{}},
		{msg: &pgproto3.Query{String: "select 1"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "select 2"}}, {pause: 5 * time.Millisecond},
		{msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
	}},
	// A failed Query drops the unnamed statement even when what an
	// earlier skip gives back is undone after it.
	{"failed-query-drops-unnamed-after-a-skip", []diffStep{
		{msg: &pgproto3.Parse{Name: "u1", Query: "select 1"}}, {msg: &pgproto3.Sync{}}, {pause: time.Millisecond},
		{msg: &pgproto3.Parse{Query: "select $1::int, $2::text"}},
		{msg: &pgproto3.Parse{Name: "u1", Query: "select 2"}},
		{msg: &pgproto3.Parse{Query: "select 3"}}, {msg: &pgproto3.Flush{}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "select 1; select 1/0"}},
		{msg: &pgproto3.Bind{Parameters: [][]byte{[]byte("5")}}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Close{ObjectType: 'S', Name: "u1"}}, {msg: &pgproto3.Sync{}},
	}},
	// A skipped unnamed Parse leaves the server's unnamed statement as it
	// was: binding it in an aborted transaction fails in the Bind, as
	// direct, not in a Parse of it again.
	{"skipped-unnamed-parse-keeps-the-servers", []diffStep{
		{msg: &pgproto3.Query{String: "begin"}},
		{msg: &pgproto3.Parse{Query: "select 1"}}, {msg: &pgproto3.Bind{Parameters: [][]byte{[]byte("2")}}},
		{msg: &pgproto3.Parse{Query: "select 2"}}, {msg: &pgproto3.Parse{Query: "select 3"}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
		{msg: &pgproto3.Query{String: "rollback"}},
		{msg: &pgproto3.Bind{}}, {msg: &pgproto3.Execute{}}, {msg: &pgproto3.Sync{}},
	}},
}

// describeConv renders a conversation one message per line.
func describeConv(conv []diffStep) string {
	var b strings.Builder
	for _, st := range conv {
		if st.pause > 0 {
			fmt.Fprintf(&b, "  (pause %s)\n", st.pause)
			continue
		}
		switch m := st.msg.(type) {
		case *pgproto3.Parse:
			fmt.Fprintf(&b, "  Parse name=%q query=%q types=%v\n", m.Name, m.Query, m.ParameterOIDs)
		case *pgproto3.Bind:
			fmt.Fprintf(&b, "  Bind portal=%q stmt=%q params=%q\n", m.DestinationPortal, m.PreparedStatement, m.Parameters)
		case *pgproto3.Describe:
			fmt.Fprintf(&b, "  Describe %c %q\n", m.ObjectType, m.Name)
		case *pgproto3.Execute:
			fmt.Fprintf(&b, "  Execute portal=%q rows=%d\n", m.Portal, m.MaxRows)
		case *pgproto3.Close:
			fmt.Fprintf(&b, "  Close %c %q\n", m.ObjectType, m.Name)
		case *pgproto3.Query:
			fmt.Fprintf(&b, "  Query %q\n", m.String)
		default:
			fmt.Fprintf(&b, "  %T\n", m)
		}
	}
	return b.String()
}

// describeReplies renders an encoded reply stream one message per line.
func describeReplies(b []byte) string {
	var out strings.Builder
	for len(b) >= 5 {
		n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
		if n < 4 || 1+n > len(b) {
			break
		}
		body := b[5 : 1+n]
		switch b[0] {
		case 'E', 'N':
			fmt.Fprintf(&out, "  %c %q\n", b[0], bytes.ReplaceAll(body, []byte{0}, []byte{'|'}))
		default:
			fmt.Fprintf(&out, "  %c %q\n", b[0], body)
		}
		b = b[1+n:]
	}
	return out.String()
}
