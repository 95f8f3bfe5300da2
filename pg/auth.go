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

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/outrigger/outrigger/config"
)

// user is one of the listener's configured users, with what its client
// login is checked against and what it logs in upstream as.
type user struct {
	name       string
	password   string
	scram      scram.StoredCredentials
	principals []string
	upstream   upstreamCreds
}

// scramIterations is the PBKDF2 cost of the SCRAM verifiers Outrigger
// derives from configured passwords (Postgres's default).
const scramIterations = 4096

func buildUsers(a config.PGAuth) (map[string]*user, error) {
	out := make(map[string]*user, len(a.Users))
	for _, u := range a.Users {
		pw := u.Password.Reveal()
		x := &user{name: u.Name, password: pw, principals: u.Principals}
		x.upstream = upstreamCreds{user: u.UpstreamUser, password: u.UpstreamPassword.Reveal()}
		if x.upstream.user == "" {
			x.upstream.user = u.Name
		}
		if x.upstream.password == "" {
			x.upstream.password = pw
		}
		if a.Method == "scram-sha-256" {
			salt := make([]byte, 16)
			if _, err := rand.Read(salt); err != nil {
				return nil, err
			}
			client, err := scram.SHA256.NewClient(u.Name, pw, "")
			if err != nil {
				return nil, fmt.Errorf("auth.users %s: %w", u.Name, err)
			}
			x.scram = client.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: scramIterations})
		}
		out[u.Name] = x
	}
	return out, nil
}

// authenticate runs the login exchange for the user the client named and
// returns the credentials to connect upstream with. principal is the mTLS
// identity ("" without a client certificate).
func (s *session) authenticate(name, principal string) (upstreamCreds, error) {
	h := s.h
	u := h.users[name]
	method := h.cfg.Auth.Method
	if u == nil && (method != "trust" || len(h.users) > 0) {
		// Without a matching user the exchange still runs for password
		// methods, so a client cannot tell unknown users from bad passwords.
		if method == "md5" || method == "scram-sha-256" {
			_ = s.passwordExchange(method, h.mockUser(name))
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
		if err := s.passwordExchange(method, u); err != nil {
			return upstreamCreds{}, err
		}
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

// passwordExchange runs md5 or SCRAM-SHA-256 with the client.
func (s *session) passwordExchange(method string, u *user) error {
	fail := fatalf(codeInvalidPassword, "password authentication failed for user %q", u.name)
	fail.Err = errAuthFailed
	if method == "md5" {
		var salt [4]byte
		_, _ = rand.Read(salt[:])
		if err := s.sendStartup(&pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
			return err
		}
		m, err := s.readAuth('p')
		if err != nil {
			return err
		}
		got, _, ok := cstring(m.Body)
		if !ok {
			return &ProtocolError{Msg: "malformed password message"}
		}
		if subtle.ConstantTimeCompare(got, []byte(md5Password(u.name, u.password, salt))) != 1 {
			return fail
		}
		return nil
	}

	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return u.scram, nil })
	if err != nil {
		return err
	}
	conv := srv.NewConversation()
	if err := s.sendStartup(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	m, err := s.readAuth('p')
	if err != nil {
		return err
	}
	var init pgproto3.SASLInitialResponse
	if err := init.Decode(m.Body); err != nil {
		return &ProtocolError{Msg: "malformed SASLInitialResponse"}
	}
	if init.AuthMechanism != "SCRAM-SHA-256" {
		return fatalf(codeProtocolViolation, "unsupported SASL mechanism %q", init.AuthMechanism)
	}
	first, err := conv.Step(string(init.Data))
	if err != nil {
		return fail
	}
	if err := s.sendStartup(&pgproto3.AuthenticationSASLContinue{Data: []byte(first)}); err != nil {
		return err
	}
	m, err = s.readAuth('p')
	if err != nil {
		return err
	}
	final, err := conv.Step(string(m.Body))
	if err != nil || !conv.Valid() {
		return fail
	}
	return s.sendStartup(&pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
}

// md5Password is what an md5 client sends: "md5" + md5(md5(password +
// user) + salt), in hex.
func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	h := hex.EncodeToString(inner[:])
	outer := md5.Sum(append([]byte(h), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}
