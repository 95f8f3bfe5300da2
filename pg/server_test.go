package pg

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
)

// slowStartDialer dials TCP connections whose first writes return only
// after a pause, as a write does on a loaded machine when the writing
// goroutine is descheduled right after the system call: the server's
// answer is in before the write returns.
type slowStartDialer struct {
	slowWrites int
	pause      time.Duration
}

func (d slowStartDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	sc := &slowStartConn{Conn: c, pause: d.pause}
	sc.left.Store(int32(d.slowWrites))
	return sc, nil
}

type slowStartConn struct {
	net.Conn
	pause time.Duration
	left  atomic.Int32
}

func (c *slowStartConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.left.Add(-1) >= 0 {
		time.Sleep(c.pause)
	}
	return n, err
}

// TestDialServerSlowLoginWrite: pgconn starts a background reader when a
// write during login takes longer than 15 ms (it guards against a
// write/read deadlock). That reader may still be blocked in a read of the
// socket when the login is over, and if the connection is hijacked as it
// is, it takes the server's first reply: the first query on the server
// then waits forever for an answer the server already sent. A dialled
// server must answer its first query.
func TestDialServerSlowLoginWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	cfg, err := config.Load(config.Source{Environ: []string{}, Data: []byte(fmt.Sprintf(`postgres:
  - name: test
    listen: "127.0.0.1:0"
    upstream: {address: %q}
    pool: {mode: transaction, size: 2}
    auth:
      method: scram-sha-256
      users:
        - {name: %s, password: %s}
`, pg.Addr(), testenv.PostgresAppUser, testenv.PostgresAppPassword))})
	if err != nil {
		t.Fatal(err)
	}
	env := testEnv()
	// Every login write (StartupMessage, SCRAM client-first and
	// client-final) pauses well past pgconn's 15 ms.
	env.Dialer = slowStartDialer{slowWrites: 3, pause: 60 * time.Millisecond}
	sh, err := NewHandler(env, &cfg.Postgres[0])
	if err != nil {
		t.Fatal(err)
	}
	h := sh.(*Handler)
	defer h.Close()
	key := poolKey{database: testenv.PostgresAppDatabase, user: testenv.PostgresAppUser}
	creds := upstreamCreds{user: testenv.PostgresAppUser, password: testenv.PostgresAppPassword}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv, err := h.dialServer(ctx, key, creds)
		cancel()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		// The bound turns a reply that never comes into a failure; the
		// query itself takes milliseconds.
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.exec(ctx, "SELECT 1")
		cancel()
		if err != nil {
			t.Fatalf("dial %d: first query on the new server: %v", i, err)
		}
		if srv.fr.buffered() {
			t.Fatalf("dial %d: unread input after the first query", i)
		}
		_ = srv.close()
	}
}
