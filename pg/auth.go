package pg

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/outrigger/outrigger/config"
)

// user is one of the listener's configured users, with what its client
// login is checked against and what it logs in upstream as.
type user struct {
	name     string
	password string
	// md5 is the md5 hash auth_query gave for the user (who then has no
	// password here).
	md5        string
	scram      scram.StoredCredentials
	principals []string
	upstream   upstreamCreds
	txTimeout  time.Duration // auth.users[].transaction_timeout (0: the pool's)
}

// scramIterations is the PBKDF2 cost of the SCRAM verifiers Outrigger
// derives from configured passwords (Postgres's default).
const scramIterations = 4096

func buildUsers(a config.PGAuth) (map[string]*user, error) {
	out := make(map[string]*user, len(a.Users))
	for _, u := range a.Users {
		pw := u.Password.Reveal()
		x := &user{name: u.Name, password: pw, principals: u.Principals, txTimeout: u.TransactionTimeout}
		x.upstream = upstreamCreds{user: u.UpstreamUser, password: u.UpstreamPassword.Reveal()}
		if x.upstream.user == "" {
			x.upstream.user = u.Name
		}
		if x.upstream.password == "" {
			x.upstream.password = pw
		}
		if a.Method == "scram-sha-256" {
			var err error
			if x.scram, err = scramCreds(u.Name, pw); err != nil {
				return nil, fmt.Errorf("auth.users %s: %w", u.Name, err)
			}
		}
		out[u.Name] = x
	}
	return out, nil
}

// scramCreds derives a SCRAM-SHA-256 verifier for a plaintext password,
// with a fresh salt.
func scramCreds(name, password string) (scram.StoredCredentials, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return scram.StoredCredentials{}, err
	}
	client, err := scram.SHA256.NewClient(name, password, "")
	if err != nil {
		return scram.StoredCredentials{}, err
	}
	return client.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: scramIterations}), nil
}

// authenticate runs the login exchange for the user the client named and
// returns the credentials to connect upstream with. principal is the mTLS
// identity ("" without a client certificate).
func (s *session) authenticate(name, principal string) (upstreamCreds, error) {
	h := s.h
	u := h.users[name]
	method := h.cfg.Auth.Method
	if u == nil && h.auth != nil {
		var err error
		if u, err = h.auth.user(s.ctx, s.db, name); err != nil {
			return upstreamCreds{}, err
		}
	}
	if u == nil && (method != "trust" || len(h.users) > 0 || h.auth != nil) {
		// Without a matching user the exchange still runs for password
		// methods, so a client cannot tell unknown users from bad passwords.
		if method == "md5" || method == "scram-sha-256" {
			mock := h.mockUser(name)
			if h.auth != nil {
				// Users from auth_query answer md5 with SCRAM when
				// Postgres stores a SCRAM verifier (its default), so an
				// unknown one does too, as Postgres's mock login does.
				mock.password = ""
			}
			_, _ = s.passwordExchange(method, mock)
			return upstreamCreds{}, fatalf(codeInvalidPassword, "password authentication failed for user %q", name)
		}
		return upstreamCreds{}, fatalf(codeInvalidAuthorization, "no such user %q on this listener", name)
	}
	switch method {
	case "trust":
		if u == nil {
			return upstreamCreds{user: name}, nil
		}
	case "cert":
		if principal == "" {
			return upstreamCreds{}, fatalf(codeInvalidAuthorization, "connection requires a valid client certificate")
		}
		if !matchAny(u.principals, principal) {
			return upstreamCreds{}, fatalf(codeInvalidAuthorization, "certificate identity %q may not log in as user %q", principal, name)
		}
	default:
		clientKey, err := s.passwordExchange(method, u)
		if err != nil {
			return upstreamCreds{}, err
		}
		if k := u.upstream.pass; k != nil {
			// The proof the client just gave logs in upstream for it.
			k.hold(clientKey, u.scram.ServerKey, u.md5)
			s.passHeld = k
		}
		clear(clientKey)
	}
	return u.upstream, nil
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// mockUser is the stand-in for a user name the listener does not know: the
// exchange runs to the end and fails like a wrong password. Its SCRAM salt
// is derived from the name and a per-listener secret (as Postgres's mock
// authentication does), so asking twice gives the same salt and a client
// cannot tell unknown users from real ones.
func (h *Handler) mockUser(name string) *user {
	mac := hmac.New(sha256.New, h.mockSecret[:])
	mac.Write([]byte(name))
	sum := mac.Sum(nil)
	u := &user{name: name, password: hex.EncodeToString(sum)}
	u.scram = scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: scramIterations},
		StoredKey:  sum, ServerKey: sum,
	}
	return u
}

var errAuthFailed = errors.New("pg: authentication failed")

// passwordExchange runs md5 or SCRAM-SHA-256 with the client. After a
// SCRAM login it returns the ClientKey the client proved.
func (s *session) passwordExchange(method string, u *user) ([]byte, error) {
	fail := fatalf(codeInvalidPassword, "password authentication failed for user %q", u.name)
	fail.Err = errAuthFailed
	if method == "md5" && (u.password != "" || u.md5 != "") {
		var salt [4]byte
		_, _ = rand.Read(salt[:])
		if err := s.sendStartup(&pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
			return nil, err
		}
		m, err := s.readAuth('p')
		if err != nil {
			return nil, err
		}
		got, _, ok := cstring(m.Body)
		if !ok {
			return nil, &ProtocolError{Msg: "malformed password message"}
		}
		var want string
		if u.password != "" {
			want = md5Password(u.name, u.password, salt)
		} else {
			want = md5FromHash(u.md5, salt)
		}
		if subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
			return nil, fail
		}
		return nil, nil
	}
	// SCRAM: asked for, or (as Postgres does under md5) the only verifier
	// there is. A user with only an md5 hash cannot answer SCRAM: the
	// exchange runs with stand-in credentials and fails.
	creds := u.scram
	if creds.StoredKey == nil {
		creds = s.h.mockUser(u.name).scram
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return nil, err
	}
	conv := srv.NewConversation()
	if err := s.sendStartup(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return nil, err
	}
	m, err := s.readAuth('p')
	if err != nil {
		return nil, err
	}
	var init pgproto3.SASLInitialResponse
	if err := init.Decode(m.Body); err != nil {
		return nil, &ProtocolError{Msg: "malformed SASLInitialResponse"}
	}
	if init.AuthMechanism != "SCRAM-SHA-256" {
		return nil, fatalf(codeProtocolViolation, "unsupported SASL mechanism %q", init.AuthMechanism)
	}
	clientFirst := string(init.Data)
	if _, err := clientFirstBare(clientFirst); err != nil {
		return nil, fatalf(codeProtocolViolation, "malformed SCRAM message")
	}
	first, err := conv.Step(clientFirst)
	if err != nil {
		return nil, fail
	}
	if err := s.sendStartup(&pgproto3.AuthenticationSASLContinue{Data: []byte(first)}); err != nil {
		return nil, err
	}
	m, err = s.readAuth('p')
	if err != nil {
		return nil, err
	}
	clientFinal := string(m.Body)
	if _, _, err := splitProof(clientFinal); err != nil {
		return nil, fatalf(codeProtocolViolation, "malformed SCRAM message")
	}
	final, err := conv.Step(clientFinal)
	if err != nil || !conv.Valid() || u.scram.StoredKey == nil {
		return nil, fail
	}
	var key []byte
	if u.upstream.pass != nil {
		if key, err = clientKeyOf(creds.StoredKey, clientFirst, first, clientFinal); err != nil {
			return nil, fail
		}
	}
	return key, s.sendStartup(&pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
}

// md5Password is what an md5 client sends: "md5" + md5(md5(password +
// user) + salt), in hex.
func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	h := hex.EncodeToString(inner[:])
	outer := md5.Sum(append([]byte(h), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}
