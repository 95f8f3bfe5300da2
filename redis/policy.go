package redis

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/outrigger/outrigger/policy"
)

// PolicyCommand returns what the policy engine checks for one whole command
// (args[0] is the command name, in any case): the table's name
// ("container|sub" for a subcommand), its ACL categories, its key arguments
// as COMMAND GETKEYS finds them, and whether the arguments name keys that
// cannot be listed (SORT and SORT_RO with BY or GET). A command the table
// does not know keeps its name, in lower case, has no categories, and has
// UndeclaredKeys set: a rule allows it only by name, and never when the rule
// restricts keys. Sessions check exactly this (without allocating: see
// policyState); `outrigger policy explain --redis` uses it too. The keys
// are args' own elements. The only error is an empty command.
func PolicyCommand(args [][]byte) (policy.RedisCommand, error) {
	if len(args) == 0 {
		return policy.RedisCommand{}, errors.New("redis: empty command")
	}
	return policyCommand(Lookup(args), args, nil), nil
}

// policyCommand builds the RedisCommand of args, which Lookup resolved to c
// (nil: not in the table), appending its keys to keys. It does not
// allocate for a known command when keys has room.
func policyCommand(c *Command, args [][]byte, keys [][]byte) policy.RedisCommand {
	if c == nil {
		return policy.RedisCommand{Name: strings.ToLower(string(args[0])), UndeclaredKeys: true}
	}
	en, pat := c.enumeration(args)
	return policy.RedisCommand{
		Name:           c.Name,
		Categories:     c.catNames,
		Keys:           c.Keys(args, keys),
		UndeclaredKeys: c.undeclaredKeys(args),
		Enumerates:     en,
		Pattern:        pat,
	}
}

// enumeration reports whether args make c list the keyspace, and the glob
// it lists by (nil: every key): KEYS pattern, SCAN cursor [MATCH pattern]
// (the last MATCH, as Redis reads them), RANDOMKEY.
func (c *Command) enumeration(args [][]byte) (bool, []byte) {
	switch c.Name {
	case "keys":
		if len(args) > 1 {
			return true, args[1]
		}
		return true, nil
	case "scan":
		var pat []byte
		for i := 2; i+1 < len(args); i += 2 {
			if equalFold(args[i], "match") {
				pat = args[i+1]
			}
		}
		return true, pat
	case "randomkey":
		return true, nil
	}
	return false, nil
}

// undeclaredKeys reports whether args make c touch keys that Keys does not
// list: SORT and SORT_RO with a BY or GET pattern. Any argument after the
// sorted key that reads BY or GET counts (a superset of what SORT parses as
// those options, so nothing slips through); Redis's own ACL refuses these
// options to users with restricted keys too.
func (c *Command) undeclaredKeys(args [][]byte) bool {
	if c.Name != "sort" && c.Name != "sort_ro" {
		return false
	}
	for i := 2; i < len(args); i++ {
		if equalFold(args[i], "by") || equalFold(args[i], "get") {
			return true
		}
	}
	return false
}

// setCategoryNames fills catNames in c and its subcommands, once at init,
// so that a check hands the policy engine a shared slice.
func setCategoryNames(c *Command) {
	c.catNames = c.Categories.Names()
	for _, sub := range c.Subcommands {
		setCategoryNames(sub)
	}
}

// policyState is one session's view of the policy: who the client is, the
// policy.Session resolved for that principal (nil until the first check,
// and again after the principal changes), and a scratch slice for the keys
// of the command being checked. It belongs to the session's goroutine.
type policyState struct {
	principal policy.Principal
	sess      *policy.Session
	keys      [][]byte
}

// setUser records the user the client authenticated as (AUTH, HELLO AUTH,
// RESET): the next check resolves the session's policy again.
func (p *policyState) setUser(user string) {
	if p.principal.User != user {
		p.principal.User = user
		p.sess = nil
	}
}

// check asks the engine live now about one command (c is Lookup's entry
// for args, nil when unknown). enforced is false when there is no policy
// or it cannot refuse anything; the command is then not looked at. An
// allowed check without a delay does not allocate.
func (p *policyState) check(ctx context.Context, live *policy.Live, c *Command, args [][]byte) (d policy.Decision, enforced bool) {
	eng := live.Load()
	if !eng.Enforces() {
		return policy.Decision{}, false
	}
	if p.sess == nil {
		p.sess = eng.Session(p.principal)
	} else {
		p.sess = eng.Rebind(p.sess)
	}
	cmd := policyCommand(c, args, p.keys[:0])
	d = p.sess.CheckRedis(ctx, cmd)
	// Keep the scratch slice's room, not the keys: they point into the
	// command reader's buffer.
	clear(cmd.Keys)
	p.keys = cmd.Keys[:0]
	return d, true
}

// sourceAddr is the client's address for policy `when: {source: ...}`: the
// zero Addr for a Unix socket client.
func sourceAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
