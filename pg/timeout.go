package pg

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Client-side limits. Both idle limits are read deadlines on the client
// connection, armed whenever the session has nothing in flight: by the
// client goroutine before it blocks on a read, and by the relay when the
// last reply of a round trip goes out. query_timeout is a timer per round
// trip that sends the server a cancel, so the client gets Postgres's own
// 57014 and the session goes on.

// idleLimit returns the idle timeout that applies now and the error a
// client that hits it gets. mu held.
func (s *session) idleLimit() (time.Duration, *Error) {
	if !s.q.empty() || s.copying {
		return 0, nil
	}
	p := &s.h.cfg.Pool
	if s.txStatus == 'I' {
		return p.ClientIdleTimeout, fatalf(codeIdleSessionTimeout, "terminating connection due to idle-session timeout (pool.client_idle_timeout %s)", p.ClientIdleTimeout)
	}
	return p.IdleInTransactionTimeout, fatalf(codeIdleInTxTimeout, "terminating connection due to idle-in-transaction timeout (pool.idle_in_transaction_timeout %s)", p.IdleInTransactionTimeout)
}

// armIdle sets or clears the client read deadline for the session's
// state. mu held.
func (s *session) armIdle() {
	if s.h.cfg.Pool.ClientIdleTimeout <= 0 && s.h.cfg.Pool.IdleInTransactionTimeout <= 0 {
		return
	}
	d, _ := s.idleLimit()
	if d > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(d))
	} else {
		_ = s.conn.SetReadDeadline(time.Time{})
	}
}

// idleError turns a read that hit an idle deadline into the client's
// error; other errors pass through.
func (s *session) idleError(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, e := s.idleLimit(); e != nil {
		return e
	}
	return err
}

// startQueryTimer arms query_timeout for a round trip. mu held.
func (s *session) startQueryTimer() {
	s.timedOut = false
	d := s.h.cfg.Pool.QueryTimeout
	if d <= 0 {
		return
	}
	if s.queryTimer == nil {
		s.queryTimer = time.AfterFunc(d, s.queryTimedOut)
		return
	}
	s.queryTimer.Reset(d)
}

func (s *session) stopQueryTimer() {
	if s.queryTimer != nil {
		s.queryTimer.Stop()
	}
}

// queryTimedOut cancels what the session's server runs now.
func (s *session) queryTimedOut() {
	s.mu.Lock()
	srv := s.srv
	busy := srv != nil && !s.q.empty()
	s.timedOut = s.timedOut || busy
	s.mu.Unlock()
	if busy {
		s.h.m.cancels.timeout.Inc()
		s.h.sendCancel(srv)
	}
}

// startTx marks the start of a transaction (an attachment, or a new
// transaction on a kept server) and arms transaction_timeout. mu held.
func (s *session) startTx() {
	s.txStart = time.Now()
	if s.txTimeout <= 0 {
		return
	}
	start := s.txStart
	s.stopTx()
	s.txTimer = time.AfterFunc(s.txTimeout, func() { s.txTimedOut(start) })
}

// stopTx disarms transaction_timeout. mu held.
func (s *session) stopTx() {
	if s.txTimer != nil {
		s.txTimer.Stop()
		s.txTimer = nil
	}
}

// txTimedOut ends the session if the transaction that began at start is
// still open.
func (s *session) txTimedOut(start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.txStart.Equal(start) {
		return
	}
	if s.txStatus == 'I' && s.q.empty() && !s.open {
		// Not in a transaction (a session-mode server held between
		// transactions): the next one starts the clock anew.
		s.txStart = time.Time{}
		return
	}
	s.h.m.txTimeouts.Inc()
	s.terminateLocked(fatalf(codeTxTimeout, "terminating connection due to transaction timeout (pool.transaction_timeout %s)", s.txTimeout))
}

// terminateLocked ends the session from outside its goroutines
// (transaction_timeout, KILL_CLIENT): the client gets e as a FATAL and its
// connection closes; a server it holds has its query canceled and is
// closed, never lent again. Done under mu, so the server is still this
// session's. mu held.
func (s *session) terminateLocked(e *Error) {
	if s.closing || s.fatalSent {
		return
	}
	e.Fatal = true
	s.writeClient(appendError(nil, e))
	_ = s.flushClient()
	s.fatalSent = true
	if srv := s.srv; srv != nil {
		if !s.q.empty() {
			go s.h.sendCancel(srv)
		}
		_ = srv.conn.Close()
	}
	_ = s.sc.Close()
}

// notifyWaiting tells a client still queued for a server, with a NOTICE,
// that it waits (pool.query_wait_notify).
func (s *session) notifyWaiting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waiting || s.closing {
		return
	}
	n := pgproto3.NoticeResponse{
		Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
		Message: fmt.Sprintf("waiting for a server connection: pool %s/%s has all %d in use (pool.query_wait_notify %s)", s.db, s.user, s.h.cfg.Pool.Size, s.h.cfg.Pool.QueryWaitNotify),
	}
	b, _ := n.Encode(nil)
	s.writeClient(b)
	_ = s.flushClient()
}
