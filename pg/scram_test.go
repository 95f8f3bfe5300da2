package pg

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// scramRun runs a whole exchange between xdg-go/scram's client (with
// password) and its server (with creds), and returns the three messages
// the client's proof is over.
func scramRun(t testing.TB, password string, creds scram.StoredCredentials) (clientFirst, serverFirst, clientFinal string) {
	t.Helper()
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := client.NewConversation(), srv.NewConversation()
	clientFirst, _ = cc.Step("")
	serverFirst, err = sc.Step(clientFirst)
	if err != nil {
		t.Fatal(err)
	}
	clientFinal, _ = cc.Step(serverFirst)
	if _, err := sc.Step(clientFinal); err != nil || !sc.Valid() {
		t.Fatalf("exchange: %v", err)
	}
	return clientFirst, serverFirst, clientFinal
}

func clientKeyFor(password string, c scram.StoredCredentials) []byte {
	salted, _ := pbkdf2.Key(sha256.New, password, []byte(c.Salt), c.Iters, 32)
	return hmacSHA256(salted, "Client Key")
}

func verifierString(c scram.StoredCredentials) string {
	b := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", c.Iters, b([]byte(c.Salt)), b(c.StoredKey), b(c.ServerKey))
}

func TestClientKeyOf(t *testing.T) {
	creds, err := scramCreds("u", "pa55word")
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseVerifier(verifierString(creds))
	if err != nil || v.scram == nil || !bytes.Equal(v.scram.StoredKey, creds.StoredKey) || v.scram.Iters != scramIterations {
		t.Fatalf("parseVerifier: %+v %v", v, err)
	}
	cf, sf, cfin := scramRun(t, "pa55word", creds)
	key, err := clientKeyOf(creds.StoredKey, cf, sf, cfin)
	if err != nil {
		t.Fatal(err)
	}
	if want := clientKeyFor("pa55word", creds); !bytes.Equal(key, want) {
		t.Errorf("ClientKey %x, want %x", key, want)
	}
	// A proof changed in one bit does not give a key.
	i := strings.LastIndex(cfin, ",p=")
	proof, _ := base64.StdEncoding.DecodeString(cfin[i+3:])
	proof[0] ^= 1
	if _, err := clientKeyOf(creds.StoredKey, cf, sf, cfin[:i+3]+base64.StdEncoding.EncodeToString(proof)); err == nil {
		t.Error("a changed proof gave a key")
	}
	for _, bad := range []string{"", "n", "n,", "x,,n=,r=a", "n,,r=a", "n,,n=u", "n,b,n=u,r=a", "p=,,n=u,r=a"} {
		if _, err := clientFirstBare(bad); err == nil {
			t.Errorf("clientFirstBare(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "c=biws", "c=biws,r=x,p=", "c=biws,r=x,p=AAAA", "r=x,c=biws,p=" + cfin[i+3:]} {
		if _, _, err := splitProof(bad); err == nil {
			t.Errorf("splitProof(%q) accepted", bad)
		}
	}
}

func TestParseVerifier(t *testing.T) {
	for in, want := range map[string]string{
		"md5" + strings.Repeat("a", 32):                  "md5",
		"md5" + strings.Repeat("z", 32):                  "plain",
		"hunter2":                                        "plain",
		"SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB":          "error",
		"SCRAM-SHA-256$0:c2FsdA==$" + k32 + ":" + k32:    "error",
		"SCRAM-SHA-256$4096:$" + k32 + ":" + k32:         "error",
		"SCRAM-SHA-256$4096:c2FsdA==$" + k32 + ":" + k32: "scram",
	} {
		v, err := parseVerifier(in)
		got := "error"
		switch {
		case err != nil:
		case v.scram != nil:
			got = "scram"
		case v.md5 != "":
			got = "md5"
		case v.plain != "":
			got = "plain"
		}
		if got != want {
			t.Errorf("parseVerifier(%q) = %s, want %s", in, got, want)
		}
	}
}

var k32 = base64.StdEncoding.EncodeToString(make([]byte, 32))

func authMsg(code uint32, data []byte) []byte {
	b := []byte{'R', 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, code)
	b = append(b, data...)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// TestPassLoginSCRAM runs a pass-through login with pgproto3's Frontend in
// place of pgconn's SCRAM client (which computes its proof from
// passPassword) against xdg-go/scram's server holding the real verifier:
// the server accepts the rewritten proof, and the client sees the
// signature it expects from passPassword.
func TestPassLoginSCRAM(t *testing.T) {
	creds, _ := scramCreds("u", "real-password")
	srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	conv := srv.NewConversation()
	k := &passKey{}
	k.hold(clientKeyFor("real-password", creds), creds.ServerKey, "")
	l, err := k.login("u")
	if err != nil {
		t.Fatal(err)
	}
	// The client side: what pgconn would send, from passPassword.
	client, _ := scram.SHA256.NewClient("", passPassword, "")
	cc := client.NewConversation()

	var toServer [][]byte
	send := func(b []byte) {
		out, err := l.outgoing(b)
		if err != nil {
			t.Fatal(err)
		}
		toServer = append(toServer, out)
	}
	recv := func(msg []byte) []byte {
		m := bytes.Clone(msg)
		if err := l.incoming(m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}).Encode(nil)
	send(startup)
	recv(authMsg(10, []byte("SCRAM-SHA-256\x00\x00")))
	first, _ := cc.Step("")
	init, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)}).Encode(nil)
	send(init)
	serverFirst, err := conv.Step(first)
	if err != nil {
		t.Fatal(err)
	}
	got := recv(authMsg(11, []byte(serverFirst)))
	final, _ := cc.Step(string(got[9:]))
	resp, _ := (&pgproto3.SASLResponse{Data: []byte(final)}).Encode(nil)
	send(resp)
	sent := toServer[len(toServer)-1]
	serverFinal, err := conv.Step(string(sent[5:]))
	if err != nil || !conv.Valid() {
		t.Fatalf("the server refused the rewritten proof: %v", err)
	}
	got = recv(authMsg(12, []byte(serverFinal)))
	if _, err := cc.Step(string(got[9:])); err != nil || !cc.Valid() {
		t.Fatalf("the client refused the rewritten signature: %v", err)
	}
	recv(authMsg(0, nil))
	if !l.done {
		t.Error("not done after AuthenticationOk")
	}

	// A server that does not know the verifier cannot finish the login.
	l2, _ := k.login("u")
	l2.state, l2.authMessage = 11, []string{"n=,r=a", "r=ab,s=c2FsdA==,i=4096", "c=biws,r=ab"}
	l2.serverFirst = "r=ab,s=c2FsdA==,i=4096"
	if err := l2.incoming(authMsg(12, []byte("v="+k32))); err == nil {
		t.Error("a wrong server signature was accepted")
	}
	// Nor skip the proof.
	l3, _ := k.login("u")
	l3.state = 11
	if err := l3.incoming(authMsg(0, nil)); err == nil {
		t.Error("AuthenticationOk before SASLFinal was accepted")
	}
	k.release()
	if _, err := k.login("u"); err == nil {
		t.Error("the key is still there after the last session ended")
	}
}

func TestPassLoginMD5(t *testing.T) {
	k := &passKey{}
	hash := "md5" + md5hex("pw"+"u")
	k.hold(nil, nil, hash)
	l, _ := k.login("u")
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}).Encode(nil)
	if _, err := l.outgoing(startup); err != nil {
		t.Fatal(err)
	}
	salt := [4]byte{1, 2, 3, 4}
	if err := l.incoming(authMsg(5, salt[:])); err != nil {
		t.Fatal(err)
	}
	pw, _ := (&pgproto3.PasswordMessage{Password: md5Password("u", passPassword, salt)}).Encode(nil)
	out, err := l.outgoing(pw)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out[5:len(out)-1]), md5Password("u", "pw", salt); got != want {
		t.Errorf("md5 answer %q, want %q", got, want)
	}
	if bytes.Equal(out, pw) {
		t.Error("outgoing rewrote the caller's buffer in place")
	}
	// SCRAM asked of an md5-only user is a clear error.
	l2, _ := k.login("u")
	if err := l2.incoming(authMsg(10, []byte("SCRAM-SHA-256\x00\x00"))); err == nil {
		t.Error("SCRAM with only an md5 hash was accepted")
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// FuzzPassLogin feeds a pass-through login arbitrary server messages and
// client writes: it returns errors, never panics, and never lets
// AuthenticationOk through before a checked SASLFinal once SCRAM began.
func FuzzPassLogin(f *testing.F) {
	creds, _ := scramCreds("u", "pw")
	f.Add([]byte("SCRAM-SHA-256\x00\x00"), "r=abc,s=c2FsdA==,i=4096", "v="+k32, []byte("n,,n=,r=a"), "c=biws,r=abc,p="+k32)
	f.Add([]byte{1, 2, 3, 4}, "", "", []byte{}, "")
	f.Fuzz(func(t *testing.T, mechs []byte, serverFirst, serverFinal string, clientFirst []byte, clientFinal string) {
		k := &passKey{}
		k.hold(clientKeyFor("pw", creds), creds.ServerKey, "md5"+strings.Repeat("0", 32))
		l, _ := k.login("u")
		startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}}).Encode(nil)
		_, _ = l.outgoing(startup)
		steps := []func() error{
			func() error { return l.incoming(authMsg(10, mechs)) },
			func() error {
				b, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: clientFirst}).Encode(nil)
				_, err := l.outgoing(b)
				return err
			},
			func() error { return l.incoming(authMsg(11, []byte(serverFirst))) },
			func() error {
				b, _ := (&pgproto3.SASLResponse{Data: []byte(clientFinal)}).Encode(nil)
				_, err := l.outgoing(b)
				return err
			},
			func() error { return l.incoming(authMsg(12, []byte(serverFinal))) },
		}
		for _, s := range steps {
			if s() != nil {
				return
			}
		}
		if err := l.incoming(authMsg(0, nil)); err == nil && l.state == 11 {
			t.Fatal("AuthenticationOk accepted without a checked SASLFinal")
		}
		// And the raw framing of outgoing on arbitrary bytes.
		_, _ = l.outgoing(append([]byte{'p'}, clientFirst...))
	})
}

// FuzzSCRAMClientMessages: the client-side parsers never panic, and a key
// comes only from a proof that matches the verifier.
func FuzzSCRAMClientMessages(f *testing.F) {
	creds, _ := scramCreds("u", "pw")
	cf, sf, cfin := scramRun(f, "pw", creds)
	f.Add(cf, sf, cfin)
	f.Add("n,,n=,r=", "", "c=,r=,p=")
	f.Add("p=tls-server-end-point,a=x,n=u,r=abc", "r=abcdef,s=c2FsdA==,i=1", "c=biws,r=abcdef,p="+k32)
	f.Fuzz(func(t *testing.T, clientFirst, serverFirst, clientFinal string) {
		_, _ = clientFirstBare(clientFirst)
		_, _, _ = splitProof(clientFinal)
		_, _, _ = serverFactors(serverFirst)
		_, _ = parseVerifier(clientFirst)
		key, err := clientKeyOf(creds.StoredKey, clientFirst, serverFirst, clientFinal)
		if err == nil {
			if !hmac.Equal(key, clientKeyFor("pw", creds)) {
				t.Fatalf("a key that is not the user's came out: %x", key)
			}
		}
	})
}
