package pg

import (
	"errors"
	"os"
	"time"
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
