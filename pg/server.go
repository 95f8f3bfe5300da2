package pg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/internal/rawio"
	"github.com/outrigger/outrigger/sidecar"
)

// server is one upstream Postgres connection, after startup and
// authentication. While it is lent to a session, that session's goroutines
// own it: the client goroutine writes, the relay goroutine reads. In the
// pool nobody touches it.
type server struct {
	conn net.Conn
	fr   *frameReader
	// wmu is held while the client goroutine writes. The server's answer
	// can arrive before the write call returns, so the relay takes wmu
	// before it gives the server back: nobody writes to a server that
	// another session may have by then.
	wmu  sync.Mutex
	w    *bufio.Writer
	addr *sidecar.UpstreamAddr
	pid  uint32
	key  []byte

	// params are the values the server last reported with ParameterStatus.
	params map[string]string
	// settings are the session parameters Outrigger has set on it.
	settings *settings
	// prepared holds the shared statement names prepared on it, least
	// recently used first, each with its epoch and result shape (see
	// stmtCopy); evicted names wait in toClose for a Close.
	prepared *simplelru.LRU[string, stmtCopy]
	toClose  []string
	// epoch is the statement epoch its older statements were last swept
	// at (see sweepEpochs).
	epoch uint64
	// unnamed is the client statement the unnamed statement holds (nil:
	// unknown or none).
	unnamed *clientStmt
	// unnamedSeq counts the messages sent to it that replace its unnamed
	// statement (see setUnnamed).
	unnamedSeq uint32
	// txStatus is the status of its last ReadyForQuery.
	txStatus byte
	created  time.Time
	// active is true while a session has it (for SHOW SERVERS).
	active atomic.Bool
	// needsReset: a pinned client left session state (LISTEN, temporary
	// tables, advisory locks) that only DISCARD ALL clears.
	needsReset bool
}

func (s *server) String() string { return fmt.Sprintf("server pid %d at %s", s.pid, s.addr.Address) }

// dialServer connects and authenticates a server connection for key, on
// the first upstream address that answers.
func (h *Handler) dialServer(ctx context.Context, key poolKey, creds upstreamCreds) (*server, error) {
	var s *server
	err := h.eachAddr(ctx, func(a *sidecar.UpstreamAddr) (err error) {
		s, err = h.dialAddr(ctx, a, key, creds)
		return err
	})
	return s, err
}

// eachAddr calls dial with upstream addresses until one answers: dial
// succeeds, or fails with the server's own error (another address would
// say the same).
func (h *Handler) eachAddr(ctx context.Context, dial func(*sidecar.UpstreamAddr) error) error {
	skip := map[*sidecar.UpstreamAddr]bool{}
	var errs []error
	for {
		a := h.up.Pick(skip)
		if a == nil {
			return errors.Join(append([]error{sidecar.ErrNoUpstream}, errs...)...)
		}
		err := dial(a)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
		skip[a] = true
	}
}

// pgConfig is pgconn's configuration for a login at a.
func (h *Handler) pgConfig(a *sidecar.UpstreamAddr, user, password, database string) *pgconn.Config {
	cfg := h.connCfg.Copy()
	cfg.User = user
	cfg.Password = password
	cfg.Database = database
	cfg.TLSConfig = h.up.TLSConfig(a)
	// Errors name the address dialed (the dial itself ignores these).
	if host, port, err := net.SplitHostPort(a.Address); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			cfg.Host, cfg.Port = host, uint16(p)
		}
	}
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return h.up.DialAddr(ctx, a, false)
	}
	return cfg
}

func (h *Handler) dialAddr(ctx context.Context, a *sidecar.UpstreamAddr, key poolKey, creds upstreamCreds) (*server, error) {
	cfg := h.pgConfig(a, creds.user, creds.password, key.database)
	var pass *passLogin
	if creds.pass != nil {
		// A user learned with auth_query: the login runs with the key its
		// client proved (see scram.go).
		l, err := creds.pass.login(creds.user)
		if err != nil {
			return nil, err
		}
		defer l.wipe()
		cfg.Password = passPassword
		cfg.BuildFrontend = l.frontend
		pass = l
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, pgErr
		}
		return nil, fmt.Errorf("upstream %s: %w", a.Address, err)
	}
	if pass != nil {
		mech := pass.mechanism
		if mech == "" {
			mech = "none" // the server asked for no password
		}
		h.env.Logger.Debug("postgres upstream login with the client's proof", slog.String("user", creds.user), slog.String("address", a.Address), slog.String("mechanism", mech))
	}
	// pgconn starts a background reader of the socket when a login write
	// is slow (15 ms: a loaded machine), and it may still be blocked in a
	// read when the login is over. Hijacked as it is, the connection would
	// lose the server's first reply to that reader, and the first query on
	// it would wait forever. SyncConn stops it (with a ping if it must).
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("upstream %s: %w", a.Address, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	conn := rawio.Wrap(hc.Conn)
	s := &server{
		conn: conn, addr: a, pid: hc.PID, key: hc.SecretKey,
		params: hc.ParameterStatuses, settings: emptySettings, txStatus: hc.TxStatus,
		created: time.Now(),
	}
	s.fr = newFrameReader(conn, serverReadBuffer, 1<<30)
	s.w = bufio.NewWriterSize(conn, 16<<10)
	size := h.cfg.Pool.MaxPreparedStatements
	if size <= 0 {
		size = 1 << 30
	}
	s.epoch = h.epoch.Load()
	s.prepared, _ = simplelru.NewLRU[string, stmtCopy](size, func(name string, _ stmtCopy) {
		s.toClose = append(s.toClose, name)
	})
	return s, nil
}

// write sends b. A failed write closes the connection, so the relay's
// read fails and the session learns of it there.
func (s *server) write(b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.w.Write(b)
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		_ = s.conn.Close()
	}
}

// quiesce waits for a write in progress to return.
func (s *server) quiesce() {
	s.wmu.Lock()
	s.wmu.Unlock() //nolint:staticcheck // an empty critical section is the point
}

// exec runs sql as a simple query and reads up to ReadyForQuery, keeping
// the server's reported parameters current. It is for connections no
// relay goroutine reads: startup probes, resets.
func (s *server) exec(ctx context.Context, sql string) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	_ = s.conn.SetDeadline(dl)
	defer s.conn.SetDeadline(time.Time{})
	q := pgproto3.Query{String: sql}
	buf, _ := q.Encode(nil)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	var firstErr error
	for {
		m, err := s.fr.next()
		if err != nil {
			return err
		}
		switch m.Type {
		case 'S':
			s.noteParameter(m.Body)
		case 'E':
			if firstErr == nil {
				var er pgproto3.ErrorResponse
				if er.Decode(m.Body) == nil {
					firstErr = pgconn.ErrorResponseToPgError(&er)
				} else {
					firstErr = errors.New("pg: undecodable error from server")
				}
			}
		case 'Z':
			if len(m.Body) == 1 {
				s.txStatus = m.Body[0]
			}
			return firstErr
		}
	}
}

// noteParameter records a ParameterStatus body.
func (s *server) noteParameter(body []byte) {
	name, rest, ok := cstring(body)
	if !ok {
		return
	}
	val, _, ok := cstring(rest)
	if !ok {
		return
	}
	if s.params == nil {
		s.params = map[string]string{}
	}
	s.params[string(name)] = string(val)
}

// errUnread is check's verdict on a server that sent something while idle.
var errUnread = errors.New("pg: idle server connection has unread input")

// check tells whether an idle connection is still usable: nothing may be
// waiting to be read on it (an idle server sends nothing unless it is going
// away: pg_terminate_backend, a shutdown) and it must not be closed. On a
// plain socket it peeks without blocking; on TLS it waits a millisecond for
// input.
func (s *server) check(context.Context) error {
	if s.fr.buffered() {
		return errUnread
	}
	if sc, ok := s.conn.(syscall.Conn); ok {
		raw, err := sc.SyscallConn()
		if err == nil {
			var n int
			var perr error
			var b [1]byte
			cerr := raw.Read(func(fd uintptr) bool {
				n, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				return true // never wait: the answer is now
			})
			switch {
			case cerr != nil:
				return cerr
			case perr == unix.EAGAIN || perr == unix.EWOULDBLOCK:
				return nil
			case perr != nil:
				return perr
			case n == 0:
				return io.EOF
			default:
				return errUnread
			}
		}
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	err := s.fr.peekByte()
	_ = s.conn.SetReadDeadline(time.Time{})
	if err == nil {
		return errUnread
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

func (s *server) close() error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.conn.Write([]byte{'X', 0, 0, 0, 4})
	return s.conn.Close()
}

// clearPrepared forgets every shared statement (after DISCARD ALL or
// DEALLOCATE ALL ran on the server).
func (s *server) clearPrepared() {
	s.prepared.Purge()
	s.toClose = s.toClose[:0]
	s.unnamed = nil
	s.unnamedSeq++ // nothing in flight gives an old one back
}
