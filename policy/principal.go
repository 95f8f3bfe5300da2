package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/outrigger/outrigger/config"
)

// Principal is who a client session is: what a rule's or a rate limit's
// `when` matches. A frontend fills what it knows and leaves the rest empty;
// an empty field matches only `when` clauses that do not name it.
type Principal struct {
	// Identity is the mTLS client certificate's SPIFFE URI SAN, else its
	// subject CN; "" without a verified client certificate.
	Identity string
	// User is the authenticated database user (Postgres), or the AUTH/HELLO
	// user (Redis; "default" before any AUTH, as Redis names it).
	User string
	// Database is the Postgres database; for Redis the frontend may leave it
	// empty.
	Database string
	// Listener is the name of the listener the client connected to.
	Listener string
	// Source is the client's address; the zero Addr for a Unix-socket
	// client. An IPv4-mapped IPv6 address is matched as IPv4.
	Source netip.Addr
}

// matcher is a compiled `when`: every non-nil field must match.
type matcher struct {
	principal, user, database, listener *namePattern
	source                              *sourcePattern
}

// compileMatch compiles m; key is its config path for errors.
func compileMatch(key string, m config.Match) (matcher, error) {
	var out matcher
	var errs []error
	for _, f := range []struct {
		name string
		pat  string
		dst  **namePattern
	}{
		{"principal", m.Principal, &out.principal},
		{"user", m.User, &out.user},
		{"database", m.Database, &out.database},
		{"listener", m.Listener, &out.listener},
	} {
		if f.pat == "" {
			continue
		}
		p, err := compileName(f.pat)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: bad pattern %q: %v", key, f.name, f.pat, err))
			continue
		}
		*f.dst = &p
	}
	if m.Source != "" {
		sp, err := compileSource(m.Source)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.source: %v", key, err))
		}
		out.source = sp
	}
	return out, errors.Join(errs...)
}

// match reports whether p is selected. A pattern never matches an empty
// value: "*" means "any principal", not "with or without one".
func (m *matcher) match(p *Principal) bool {
	return matchField(m.principal, p.Identity) &&
		matchField(m.user, p.User) &&
		matchField(m.database, p.Database) &&
		matchField(m.listener, p.Listener) &&
		(m.source == nil || m.source.match(p.Source))
}

func matchField(pat *namePattern, v string) bool {
	return pat == nil || (v != "" && pat.match(v))
}

// sourcePattern matches a client address: a CIDR, or a glob on the
// address's text form.
type sourcePattern struct {
	prefix netip.Prefix // valid for a CIDR
	glob   namePattern
}

func compileSource(s string) (*sourcePattern, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		return &sourcePattern{prefix: pfx.Masked()}, nil
	}
	g, err := compileName(s)
	if err != nil {
		return nil, fmt.Errorf("bad pattern %q: %v", s, err)
	}
	return &sourcePattern{glob: g}, nil
}

func (sp *sourcePattern) match(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	if sp.prefix.IsValid() {
		return sp.prefix.Contains(a.WithZone(""))
	}
	return sp.glob.match(a.String())
}
