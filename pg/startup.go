package pg

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes (the version field of the first message).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	// maxStartupLength is Postgres's own bound on a startup packet.
	maxStartupLength = 10000
)

// startupResult is what the client asked for in its StartupMessage.
type startupResult struct {
	params    map[string]string
	principal string
	minor     uint32
	unknown   []string
	cancel    bool
	tls       bool
}

// readStartup answers SSLRequest and GSSENCRequest until the client sends a
// StartupMessage or a CancelRequest. With a client-facing TLS profile a
// client must use TLS.
func (s *session) readStartup(ctx context.Context) (startupResult, error) {
	var res startupResult
	tlsDone := false
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(s.fr, hdr[:]); err != nil {
			return res, err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		code := binary.BigEndian.Uint32(hdr[4:])
		if n < 8 || n > maxStartupLength {
			return res, &ProtocolError{Msg: fmt.Sprintf("invalid startup packet length %d", n)}
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(s.fr, body); err != nil {
			return res, err
		}
		switch {
		case code == codeSSLRequest && n == 8:
			if tlsDone {
				return res, &ProtocolError{Msg: "SSLRequest after TLS was set up"}
			}
			if s.h.env.ServerTLS == nil {
				if _, err := s.conn.Write([]byte{'N'}); err != nil {
					return res, err
				}
				continue
			}
			if s.fr.buffered() {
				return res, &ProtocolError{Msg: "data sent after SSLRequest before the TLS handshake"}
			}
			if _, err := s.conn.Write([]byte{'S'}); err != nil {
				return res, err
			}
			tc, principal, ok := s.h.env.AcceptTLS(ctx, s.sc, nil)
			if !ok {
				return res, io.EOF
			}
			s.setConn(tc)
			res.principal = principal
			res.tls = true
			tlsDone = true
		case code == codeGSSENCRequest && n == 8:
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return res, err
			}
		case code == codeCancelRequest:
			if len(body) < 8 {
				return res, &ProtocolError{Msg: "short CancelRequest"}
			}
			s.h.cancel(binary.BigEndian.Uint32(body[:4]), body[4:])
			res.cancel = true
			return res, nil
		case code>>16 == 3:
			if s.h.env.ServerTLS != nil && !tlsDone {
				return res, fatalf(codeInvalidAuthorization, "this listener requires TLS (connect with sslmode=require)")
			}
			params, err := decodeStartupParams(body)
			if err != nil {
				return res, err
			}
			res.params = params
			res.minor = code & 0xffff
			for k := range params {
				if strings.HasPrefix(k, "_pq_.") {
					res.unknown = append(res.unknown, k)
				}
			}
			return res, nil
		default:
			return res, fatalf(codeProtocolViolation, "unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff)
		}
	}
}

// decodeStartupParams reads the name/value pairs of a StartupMessage.
func decodeStartupParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for len(b) > 0 && b[0] != 0 {
		k, rest, ok := cstring(b)
		if !ok {
			return nil, &ProtocolError{Msg: "malformed startup packet"}
		}
		v, rest, ok := cstring(rest)
		if !ok {
			return nil, &ProtocolError{Msg: "malformed startup packet"}
		}
		params[string(k)] = string(v)
		b = rest
	}
	if !bytes.Equal(b, []byte{0}) {
		return nil, &ProtocolError{Msg: "malformed startup packet"}
	}
	if params["user"] == "" {
		return nil, fatalf(codeInvalidAuthorization, "no PostgreSQL user name specified in startup packet")
	}
	return params, nil
}

// sendStartup writes one backend message during startup and flushes it.
func (s *session) sendStartup(m pgproto3.BackendMessage) error {
	buf, err := m.Encode(nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeClient(buf)
	return s.flushClient()
}

// readAuth reads the client's next authentication message, of type want.
func (s *session) readAuth(want byte) (msg, error) {
	m, err := s.fr.next()
	if err != nil {
		return m, err
	}
	if m.Type != want {
		return m, &ProtocolError{Msg: fmt.Sprintf("expected authentication message %q, got %q", want, m.Type)}
	}
	return m, nil
}

// setConn makes c (the TLS connection) the client connection.
func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.fr = newFrameReader(c, clientReadBuffer, s.h.cfg.MaxMessageSize)
	if s.w != nil {
		s.w.Reset(c)
	}
}
