package pg

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// This file holds the SCRAM and md5 steps that users learned with
// auth_query need: reading the verifier Postgres stores, recovering the
// ClientKey from a client's proof, and logging in upstream with that
// ClientKey (or the md5 hash) instead of a password. pgconn dials, speaks
// TLS and startup, and runs its own SCRAM client over the exchange; the
// upstream step here only rewrites the proof it sends and the signature
// it checks, so pgconn's client never needs the password.

// verifier is a password as Postgres stores it (pg_authid.rolpassword):
// exactly one field is set.
type verifier struct {
	scram *scram.StoredCredentials // SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey
	md5   string                   // "md5" and 32 hex digits
	plain string                   // anything else: a plaintext password
}

// maxSCRAMIterations bounds the PBKDF2 cost a verifier or a server may ask
// of Outrigger (pgconn's own bound).
const maxSCRAMIterations = 10_000_000

var errBadVerifier = errors.New("malformed SCRAM-SHA-256 verifier")

// parseVerifier reads s. A string that is neither a SCRAM nor an md5
// verifier is a plaintext password, as Postgres and PgBouncer read it.
func parseVerifier(s string) (verifier, error) {
	if rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$"); ok {
		factors, keys, ok := strings.Cut(rest, "$")
		if !ok {
			return verifier{}, errBadVerifier
		}
		iters, salt, ok1 := strings.Cut(factors, ":")
		stored, server, ok2 := strings.Cut(keys, ":")
		if !ok1 || !ok2 {
			return verifier{}, errBadVerifier
		}
		n, err := strconv.Atoi(iters)
		if err != nil || n <= 0 || n > maxSCRAMIterations {
			return verifier{}, errBadVerifier
		}
		rawSalt, err1 := base64.StdEncoding.DecodeString(salt)
		storedKey, err2 := base64.StdEncoding.DecodeString(stored)
		serverKey, err3 := base64.StdEncoding.DecodeString(server)
		if err1 != nil || err2 != nil || err3 != nil || len(rawSalt) == 0 ||
			len(storedKey) != sha256.Size || len(serverKey) != sha256.Size {
			return verifier{}, errBadVerifier
		}
		return verifier{scram: &scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(rawSalt), Iters: n},
			StoredKey:  storedKey, ServerKey: serverKey,
		}}, nil
	}
	if len(s) == 35 && strings.HasPrefix(s, "md5") {
		if _, err := hex.DecodeString(s[3:]); err == nil {
			return verifier{md5: s}, nil
		}
	}
	return verifier{plain: s}, nil
}

// md5FromHash is what an md5 client sends for a stored md5 hash ("md5" +
// md5(password + user) in hex): "md5" + md5(hash's hex + salt) in hex.
func md5FromHash(hash string, salt [4]byte) string {
	outer := md5.Sum(append([]byte(hash[3:]), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}

var errMalformedSCRAM = errors.New("malformed SCRAM message")

// clientFirstBare is a client-first-message without its GS2 header
// ("n,,", "y,," or "p=name,," with an optional authzid), checked for the
// shape RFC 5802 gives it.
func clientFirstBare(msg string) (string, error) {
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return "", errMalformedSCRAM
	}
	switch {
	case flag == "n", flag == "y", strings.HasPrefix(flag, "p=") && len(flag) > 2:
	default:
		return "", errMalformedSCRAM
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok || (authzid != "" && !strings.HasPrefix(authzid, "a=")) {
		return "", errMalformedSCRAM
	}
	user, nonce, ok := strings.Cut(bare, ",")
	if !ok || !strings.HasPrefix(user, "n=") || !strings.HasPrefix(nonce, "r=") || len(nonce) < 3 {
		return "", errMalformedSCRAM
	}
	return bare, nil
}

// splitProof splits a client-final-message into the part without the
// proof and the proof's bytes.
func splitProof(msg string) (string, []byte, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 || !strings.HasPrefix(msg, "c=") || !strings.Contains(msg[:i], ",r=") {
		return "", nil, errMalformedSCRAM
	}
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return "", nil, errMalformedSCRAM
	}
	return msg[:i], proof, nil
}

func hmacSHA256(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for i, p := range parts {
		if i > 0 {
			m.Write([]byte{','})
		}
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// clientKeyOf recovers the ClientKey from a SCRAM exchange the server side
// accepted: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and
// H(ClientKey) must be StoredKey.
func clientKeyOf(storedKey []byte, clientFirst, serverFirst, clientFinal string) ([]byte, error) {
	bare, err := clientFirstBare(clientFirst)
	if err != nil {
		return nil, err
	}
	withoutProof, proof, err := splitProof(clientFinal)
	if err != nil {
		return nil, err
	}
	sig := hmacSHA256(storedKey, bare, serverFirst, withoutProof)
	key := make([]byte, len(proof))
	subtle.XORBytes(key, proof, sig)
	sum := sha256.Sum256(key)
	if subtle.ConstantTimeCompare(sum[:], storedKey) != 1 {
		clear(key)
		return nil, errors.New("SCRAM proof does not match the verifier")
	}
	return key, nil
}

// passKey is what a user learned with auth_query logs in upstream with:
// the ClientKey (and the verifier's ServerKey) of its last SCRAM login, or
// the md5 hash auth_query gave. It lives in memory only, while a session of
// the user is open: the last one to end zeroes it. One per user name and
// listener, so the pool's credentials compare equal across logins.
type passKey struct {
	mu        sync.Mutex
	refs      int
	clientKey []byte
	serverKey []byte
	md5       string
}

// hold records a login's key and counts its session.
func (k *passKey) hold(clientKey, serverKey []byte, md5 string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refs++
	if clientKey != nil {
		clear(k.clientKey)
		k.clientKey = bytes.Clone(clientKey)
		k.serverKey = bytes.Clone(serverKey)
	}
	if md5 != "" {
		k.md5 = md5
	}
}

// release ends a session's hold; the last one zeroes the key.
func (k *passKey) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refs--; k.refs <= 0 {
		k.refs = 0
		clear(k.clientKey)
		clear(k.serverKey)
		k.clientKey, k.serverKey, k.md5 = nil, nil, ""
	}
}

// idle says no session holds the key.
func (k *passKey) idle() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refs == 0
}

// login returns an upstream login with the key, or an error when no
// session of the user is open to lend one.
func (k *passKey) login(user string) (*passLogin, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.clientKey == nil && k.md5 == "" {
		return nil, fmt.Errorf("no client of user %q is logged in to lend its SCRAM key for a new server connection", user)
	}
	return &passLogin{user: user, clientKey: bytes.Clone(k.clientKey), serverKey: bytes.Clone(k.serverKey), md5: k.md5}, nil
}

// passPassword is the password pgconn's SCRAM and md5 clients are given on
// a pass-through login; what it computes from it is replaced on the wire.
const passPassword = "outrigger-pass-through"

// passLogin is one upstream login with a passKey: it sits between pgconn's
// Frontend and the socket until AuthenticationOk, puts the real proof (or
// md5 answer) into what the client sends, checks the server's signature
// with the verifier's ServerKey (so the server proves it knows the user's
// verifier) and replaces it with the one pgconn expects from passPassword.
// Every rewrite keeps the message's length.
type passLogin struct {
	user                 string
	clientKey, serverKey []byte
	md5                  string

	started     bool   // the StartupMessage went out
	mechanism   string // the SASL mechanism pgconn chose
	state       byte   // the server's last authentication request (0, 5, 10, 11, 12)
	clientFirst string
	serverFirst string
	authMessage []string
	md5Salt     [4]byte
	done        bool // AuthenticationOk: nothing more to look at
}

func (l *passLogin) wipe() { clear(l.clientKey); clear(l.serverKey) }

// frontend is pgconn's BuildFrontend for the login.
func (l *passLogin) frontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(&passReader{l: l, r: r}, &passWriter{l: l, w: w})
}

// outgoing looks at (and may rewrite, in a copy) what pgconn writes: whole
// messages, the first of them the untyped StartupMessage.
func (l *passLogin) outgoing(b []byte) ([]byte, error) {
	out := b
	for i := 0; i < len(b); {
		if !l.started {
			if len(b) < 4 {
				return b, nil
			}
			l.started = true
			i += int(binary.BigEndian.Uint32(b))
			continue
		}
		if len(b)-i < 5 {
			return out, nil
		}
		n := int(binary.BigEndian.Uint32(b[i+1:]))
		if n < 4 || len(b)-i-1 < n {
			return out, nil
		}
		if b[i] == 'p' {
			if &out[0] == &b[0] {
				out = bytes.Clone(b)
			}
			if err := l.password(out[i+5 : i+1+n]); err != nil {
				return nil, err
			}
		}
		i += 1 + n
	}
	return out, nil
}

// password rewrites the body of a password-family message in place.
func (l *passLogin) password(body []byte) error {
	switch l.state {
	case 5:
		want := md5FromHash(l.md5, l.md5Salt)
		if len(body) != len(want)+1 {
			return errors.New("pass-through login: unexpected md5 password message")
		}
		copy(body, want)
		l.mechanism = "md5"
	case 10:
		var m pgproto3.SASLInitialResponse
		if err := m.Decode(body); err != nil {
			return err
		}
		l.clientFirst = string(m.Data)
		l.mechanism = m.AuthMechanism
	case 11:
		bare, err := clientFirstBare(l.clientFirst)
		if err != nil {
			return err
		}
		withoutProof, _, err := splitProof(string(body))
		if err != nil {
			return err
		}
		l.authMessage = []string{bare, l.serverFirst, withoutProof}
		stored := sha256.Sum256(l.clientKey)
		sig := hmacSHA256(stored[:], l.authMessage...)
		proof := make([]byte, len(sig))
		subtle.XORBytes(proof, l.clientKey, sig)
		base64.StdEncoding.Encode(body[len(withoutProof)+3:], proof)
	default:
		return errors.New("pass-through login: the server asked for a password Outrigger does not hold (only SCRAM-SHA-256 and md5 can be passed through)")
	}
	return nil
}

// incoming looks at a whole server message before pgconn reads it.
func (l *passLogin) incoming(msg []byte) error {
	if msg[0] != 'R' || len(msg) < 9 {
		if msg[0] == 'E' {
			l.done = true // pgconn reports it
		}
		return nil
	}
	code := binary.BigEndian.Uint32(msg[5:9])
	data := msg[9:]
	switch code {
	case 0:
		if l.state == 11 {
			return errors.New("pass-through login: the server accepted the login without proving it knows the user's verifier")
		}
		l.done = true
	case 5:
		if l.md5 == "" {
			return errors.New("pass-through login: the server asks for md5, and auth_query gave a SCRAM verifier (set the server's password_encryption and the user's password to one method)")
		}
		copy(l.md5Salt[:], data)
	case 10:
		if l.clientKey == nil {
			return errors.New("pass-through login: the server asks for SCRAM, and auth_query gave an md5 hash (set the user's password again with password_encryption = scram-sha-256)")
		}
	case 11:
		l.serverFirst = string(data)
	case 12:
		if l.state != 11 || len(l.authMessage) == 0 {
			return errors.New("pass-through login: SCRAM final message out of order")
		}
		v, ok := bytes.CutPrefix(data, []byte("v="))
		want := hmacSHA256(l.serverKey, l.authMessage...)
		got, err := base64.StdEncoding.DecodeString(string(v))
		if !ok || err != nil || !hmac.Equal(got, want) {
			return errors.New("pass-through login: the server's SCRAM signature does not match the user's verifier")
		}
		salt, iters, err := serverFactors(l.serverFirst)
		if err != nil {
			return err
		}
		salted, err := pbkdf2.Key(sha256.New, passPassword, salt, iters, sha256.Size)
		if err != nil {
			return err
		}
		fake := hmacSHA256(hmacSHA256(salted, "Server Key"), l.authMessage...)
		base64.StdEncoding.Encode(v, fake)
	default:
		return fmt.Errorf("pass-through login: the server asked for authentication type %d, which Outrigger cannot pass through", code)
	}
	l.state = byte(code)
	return nil
}

// serverFactors reads the salt and iteration count of a
// server-first-message (r=...,s=salt,i=n).
func serverFactors(msg string) ([]byte, int, error) {
	var salt []byte
	iters := 0
	for _, a := range strings.Split(msg, ",") {
		switch {
		case strings.HasPrefix(a, "s="):
			s, err := base64.StdEncoding.DecodeString(a[2:])
			if err != nil {
				return nil, 0, errMalformedSCRAM
			}
			salt = s
		case strings.HasPrefix(a, "i="):
			n, err := strconv.Atoi(a[2:])
			if err != nil || n <= 0 || n > maxSCRAMIterations {
				return nil, 0, errMalformedSCRAM
			}
			iters = n
		}
	}
	if salt == nil || iters == 0 {
		return nil, 0, errMalformedSCRAM
	}
	return salt, iters, nil
}

type passWriter struct {
	l *passLogin
	w io.Writer
}

func (w *passWriter) Write(b []byte) (int, error) {
	if w.l.done {
		return w.w.Write(b)
	}
	out, err := w.l.outgoing(b)
	if err != nil {
		return 0, err
	}
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// passReader hands pgconn the server's messages whole while the login is
// in progress (so incoming sees each one entire), then the bytes as they
// come.
type passReader struct {
	l     *passLogin
	r     io.Reader
	pend  []byte // read, not yet framed
	ready []byte // framed and looked at, for pgconn
}

// maxLoginMessage bounds one authentication message from the server.
const maxLoginMessage = 64 << 10

func (r *passReader) Read(p []byte) (int, error) {
	for len(r.ready) == 0 {
		if r.l.done {
			if len(r.pend) == 0 {
				return r.r.Read(p)
			}
			r.ready, r.pend = r.pend, nil
			break
		}
		if len(r.pend) >= 5 {
			n := int(binary.BigEndian.Uint32(r.pend[1:]))
			if n < 4 || n > maxLoginMessage {
				return 0, fmt.Errorf("pass-through login: server message of length %d", n)
			}
			if len(r.pend) >= 1+n {
				msg := r.pend[:1+n]
				if err := r.l.incoming(msg); err != nil {
					return 0, err
				}
				r.ready, r.pend = msg, r.pend[1+n:]
				if r.l.done && len(r.pend) > 0 {
					r.ready = append(bytes.Clone(msg), r.pend...)
					r.pend = nil
				}
				break
			}
		}
		buf := make([]byte, 4096)
		n, err := r.r.Read(buf)
		r.pend = append(r.pend, buf[:n]...)
		if n == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, r.ready)
	r.ready = r.ready[n:]
	return n, nil
}
