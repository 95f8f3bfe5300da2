package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks the whole config and returns every problem, joined with
// errors.Join, each naming its key path (postgres[0].pool.size: must be > 0).
// It reads no more than file metadata: TLS files are checked to exist.
func (c *Config) Validate() error {
	v := &validator{}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")
	if c.Admin.Listen != "off" {
		v.address("admin.listen", c.Admin.Listen)
	}
	v.nonNegative("shutdown.drain_timeout", c.Shutdown.DrainTimeout)
	v.nonNegative("reload.debounce", c.Reload.Debounce)
	if n, err := strconv.Atoi(c.Runtime.MaxProcs); c.Runtime.MaxProcs != "auto" && (err != nil || n < 1) {
		v.add("runtime.max_procs", "must be \"auto\" or a number > 0, not %q", c.Runtime.MaxProcs)
	}

	for name, p := range c.TLS {
		key := "tls." + name
		v.required(key+".cert", p.Cert)
		v.required(key+".key", p.Key)
		v.file(key+".cert", p.Cert)
		v.file(key+".key", p.Key)
		v.file(key+".ca", p.CA)
		v.oneOf(key+".client_auth", p.ClientAuth, "none", "request", "require")
		if p.ClientAuth != "none" && p.CA == "" {
			v.add(key+".ca", "required when client_auth is %s", p.ClientAuth)
		}
		v.oneOf(key+".min_version", p.MinVersion, "1.2", "1.3")
		v.positive(key+".reload_interval", p.ReloadInterval)
	}

	names := map[string]string{}
	addrs := map[string]string{}
	if c.Admin.Listen != "off" && !anyPort(c.Admin.Listen) {
		addrs[c.Admin.Listen] = "admin.listen"
	}
	for _, l := range c.Listeners() {
		switch {
		case l.Name == "":
			v.add(l.Path+".name", "required")
		case names[l.Name] != "":
			v.add(l.Path+".name", "%q is already the name of %s", l.Name, names[l.Name])
		default:
			names[l.Name] = l.Path
		}
		if v.address(l.Path+".listen", l.Listen) {
			if other, dup := addrs[l.Listen]; dup {
				v.add(l.Path+".listen", "%s is already used by %s", l.Listen, other)
			}
			if !anyPort(l.Listen) {
				addrs[l.Listen] = l.Path + ".listen"
			}
		}
		if l.TLS != "" {
			if _, ok := c.TLS[l.TLS]; !ok {
				v.add(l.Path+".tls", "no TLS profile named %q under tls:", l.TLS)
			}
		}
		if l.MaxConnections <= 0 {
			v.add(l.Path+".max_connections", "must be > 0")
		}
	}

	for i, s := range c.Postgres {
		key := keyPath("postgres", i)
		v.upstream(key+".upstream", s.Upstream)
		p := s.Pool
		v.oneOf(key+".pool.mode", p.Mode, "session", "transaction", "statement")
		if p.Size <= 0 {
			v.add(key+".pool.size", "must be > 0")
		}
		if p.MinIdle < 0 || p.MinIdle > p.Size {
			v.add(key+".pool.min_idle", "must be between 0 and pool.size (%d)", p.Size)
		}
		if p.MaxClients <= 0 {
			v.add(key+".pool.max_clients", "must be > 0")
		}
		v.positive(key+".pool.acquire_timeout", p.AcquireTimeout)
		v.nonNegative(key+".pool.server_idle_timeout", p.ServerIdleTimeout)
		v.nonNegative(key+".pool.server_lifetime", p.ServerLifetime)
		v.nonNegative(key+".pool.idle_in_transaction_timeout", p.IdleInTransactionTimeout)
		v.nonNegative(key+".pool.query_timeout", p.QueryTimeout)
		v.nonNegative(key+".pool.client_idle_timeout", p.ClientIdleTimeout)
		v.nonNegative(key+".pool.transaction_timeout", p.TransactionTimeout)
		v.nonNegative(key+".pool.query_wait_notify", p.QueryWaitNotify)
		if p.MaxUserClients < 0 {
			v.add(key+".pool.max_user_client_connections", "must be >= 0")
		}
		if p.MaxDBClients < 0 {
			v.add(key+".pool.max_db_client_connections", "must be >= 0")
		}
		if p.MaxPreparedStatements < 0 {
			v.add(key+".pool.max_prepared_statements", "must be >= 0")
		}
		v.oneOf(key+".pool.on_session_state", p.OnSessionState, "pin", "error")
		if s.MaxMessageSize < 1024 {
			v.add(key+".max_message_size", "must be >= 1024")
		}
		v.oneOf(key+".auth.method", s.Auth.Method, "trust", "md5", "scram-sha-256", "cert")
		if s.Auth.Method == "cert" && s.TLS == "" {
			v.add(key+".auth.method", "cert needs a client-facing tls profile with client_auth: require")
		}
		if s.Auth.AuthUser != "" {
			switch s.Auth.Method {
			case "md5", "scram-sha-256":
			default:
				v.add(key+".auth.auth_user", "auth_query needs auth.method md5 or scram-sha-256 (it checks passwords)")
			}
			if !strings.Contains(s.Auth.AuthQuery, "$1") {
				v.add(key+".auth.auth_query", "must take the user name as the parameter $1")
			}
			v.positive(key+".auth.auth_cache_ttl", s.Auth.AuthCacheTTL)
			if s.Auth.AuthPoolSize <= 0 {
				v.add(key+".auth.auth_pool_size", "must be > 0")
			}
		}
		seen := map[string]bool{}
		for j, u := range s.Auth.Users {
			ukey := fmt.Sprintf("%s.auth.users[%d]", key, j)
			if u.Name == "" {
				v.add(ukey+".name", "required")
			} else if seen[u.Name] {
				v.add(ukey+".name", "user %q is listed twice", u.Name)
			}
			seen[u.Name] = true
			if (s.Auth.Method == "md5" || s.Auth.Method == "scram-sha-256") && u.Password == "" {
				v.add(ukey+".password", "required for auth.method %s (or password_file)", s.Auth.Method)
			}
			v.nonNegative(ukey+".transaction_timeout", u.TransactionTimeout)
			if s.Auth.Method == "cert" && len(u.Principals) == 0 {
				v.add(ukey+".principals", "required for auth.method cert")
			}
			for k, g := range u.Principals {
				if _, err := path.Match(g, ""); err != nil {
					v.add(fmt.Sprintf("%s.principals[%d]", ukey, k), "bad glob: %v", err)
				}
			}
		}
	}
	for i, s := range c.Redis {
		key := keyPath("redis", i)
		v.upstream(key+".upstream", s.Upstream)
		if s.Pool.Size <= 0 {
			v.add(key+".pool.size", "must be > 0")
		}
		if s.Pool.PinnedSize <= 0 {
			v.add(key+".pool.pinned_size", "must be > 0")
		}
		v.positive(key+".pool.command_timeout", s.Pool.CommandTimeout)
		users := map[string]bool{}
		for j, u := range s.Auth.Users {
			ukey := fmt.Sprintf("%s.auth.users[%d]", key, j)
			switch {
			case u.Name == "":
				v.add(ukey+".name", "required")
			case users[u.Name]:
				v.add(ukey+".name", "user %q is listed twice", u.Name)
			}
			users[u.Name] = true
			if u.Password == "" {
				v.add(ukey+".password", "required (or password_file)")
			}
		}
		if s.Auth.Required && len(s.Auth.Users) == 0 {
			v.add(key+".auth.required", "needs auth.users")
		}
		if s.MaxPipeline <= 0 {
			v.add(key+".max_pipeline", "must be > 0")
		}
		if s.MaxCommandBytes < 1024 {
			v.add(key+".max_command_bytes", "must be >= 1024")
		}
	}
	for i, s := range c.TCP {
		key := keyPath("tcp", i)
		v.upstream(key+".upstream", s.Upstream)
		v.nonNegative(key+".idle_timeout", s.IdleTimeout)
	}
	for i, s := range c.HTTP {
		key := keyPath("http", i)
		if len(s.Routes) == 0 {
			v.add(key+".routes", "at least one route is required")
		}
		for j, r := range s.Routes {
			rkey := fmt.Sprintf("%s.routes[%d]", key, j)
			if !strings.HasPrefix(r.Prefix, "/") {
				v.add(rkey+".prefix", "must start with /")
			}
			v.upstream(rkey+".upstream", r.Upstream)
			v.positive(rkey+".timeout", r.Timeout)
			if r.Retries < 0 {
				v.add(rkey+".retries", "must be >= 0")
			}
		}
		v.positive(key+".read_header_timeout", s.ReadHeaderTimeout)
		v.nonNegative(key+".idle_timeout", s.IdleTimeout)
		if s.RetryBudget.Ratio < 0 {
			v.add(key+".retry_budget.ratio", "must be >= 0")
		}
		if s.RetryBudget.MinPerSecond < 0 {
			v.add(key+".retry_budget.min_per_second", "must be >= 0")
		}
	}
	v.policy(c)
	v.observability(c)
	return errors.Join(v.errs...)
}

// observability checks the access_log and tracing sections.
func (v *validator) observability(c *Config) {
	a := c.AccessLog
	if strings.TrimSpace(a.Output) == "" {
		v.add("access_log.output", "required: stderr, stdout or a file path")
	} else if a.Output != "stderr" && a.Output != "stdout" {
		if fi, err := os.Stat(filepath.Dir(a.Output)); err != nil {
			v.add("access_log.output", "%v", err)
		} else if !fi.IsDir() {
			v.add("access_log.output", "%s is not a directory", filepath.Dir(a.Output))
		}
	}
	v.ratio("access_log.sample_rate", a.SampleRate)
	v.nonNegative("access_log.slow_threshold", a.SlowThreshold)
	if a.MaxStatementLength < 16 {
		v.add("access_log.max_statement_length", "must be >= 16")
	}
	t := c.Tracing
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		switch {
		case err != nil:
			v.add("tracing.endpoint", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			v.add("tracing.endpoint", "%q: want an http:// or https:// URL (OTLP/HTTP)", t.Endpoint)
		case u.Host == "":
			v.add("tracing.endpoint", "%q: no host", t.Endpoint)
		}
	}
	v.ratio("tracing.sample_ratio", t.SampleRatio)
	if t.ServiceName == "" {
		v.add("tracing.service_name", "required")
	}
}

// ratio checks a share between 0 and 1.
func (v *validator) ratio(key string, r float64) {
	if !(r >= 0 && r <= 1) {
		v.add(key, "must be between 0 and 1")
	}
}

type validator struct{ errs []error }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (v *validator) required(key, val string) {
	if val == "" {
		v.add(key, "required")
	}
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(key, "%q is not one of %s", val, strings.Join(allowed, " | "))
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be > 0")
	}
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, "must be >= 0")
	}
}

func (v *validator) file(key, p string) {
	if p == "" {
		return
	}
	if _, err := os.Stat(p); err != nil {
		v.add(key, "%v", err)
	}
}

// address checks host:port or unix:/path and reports whether it was valid.
func (v *validator) address(key, addr string) bool {
	if _, _, err := ParseAddress(addr); err != nil {
		v.add(key, "%v", err)
		return false
	}
	return true
}

func (v *validator) upstream(key string, u Upstream) {
	all := u.AllAddresses()
	if len(all) == 0 {
		v.add(key+".address", "required (or addresses)")
	}
	for i, a := range all {
		k := key + ".address"
		if u.Address == "" || i > 0 {
			k = fmt.Sprintf("%s.addresses[%d]", key, i-boolInt(u.Address != ""))
		}
		v.address(k, a)
	}
	v.positive(key+".connect_timeout", u.ConnectTimeout)
	v.positive(key+".backoff", u.Backoff)
	if u.MaxBackoff < u.Backoff {
		v.add(key+".max_backoff", "must be >= backoff (%s)", u.Backoff)
	}
	t := u.TLS
	v.oneOf(key+".tls.mode", t.Mode, "disable", "require", "verify-ca", "verify-full")
	if (t.Mode == "verify-ca" || t.Mode == "verify-full") && t.CA == "" {
		v.add(key+".tls.ca", "required for mode %s", t.Mode)
	}
	if (t.Cert == "") != (t.Key == "") {
		v.add(key+".tls", "cert and key go together")
	}
	v.file(key+".tls.ca", t.CA)
	v.file(key+".tls.cert", t.Cert)
	v.file(key+".tls.key", t.Key)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (v *validator) match(key string, m Match) {
	for _, f := range []struct{ name, pat string }{
		{"principal", m.Principal}, {"user", m.User}, {"database", m.Database}, {"listener", m.Listener},
	} {
		v.pattern(key+"."+f.name, f.pat)
	}
	if m.Source == "" {
		return
	}
	if strings.Contains(m.Source, "/") {
		if _, err := netip.ParsePrefix(m.Source); err != nil {
			v.add(key+".source", "%v", err)
		}
		return
	}
	v.pattern(key+".source", m.Source)
}

// pattern checks a path.Match glob.
func (v *validator) pattern(key, pat string) {
	if _, err := path.Match(pat, ""); err != nil {
		v.add(key, "bad pattern %q: %v", pat, err)
	}
}

// patterns checks a list of non-empty globs.
func (v *validator) patterns(key string, pats []string) {
	for i, p := range pats {
		k := fmt.Sprintf("%s[%d]", key, i)
		if p == "" {
			v.add(k, "must not be empty")
			continue
		}
		v.pattern(k, p)
	}
}

// objects checks a list of table or function patterns: globs on
// "name", "schema.name" or "catalog.schema.name", split at the dots outside
// double quotes (as package classify writes names), or "*".
func (v *validator) objects(key string, pats []string) {
	for i, p := range pats {
		k := fmt.Sprintf("%s[%d]", key, i)
		if p == "*" {
			continue
		}
		var parts []string
		start, quoted := 0, false
		for j := 0; j < len(p); j++ {
			switch p[j] {
			case '"':
				quoted = !quoted
			case '.':
				if !quoted {
					parts = append(parts, p[start:j])
					start = j + 1
				}
			}
		}
		parts = append(parts, p[start:])
		if len(parts) > 3 {
			v.add(k, "bad pattern %q: more than 3 dot-separated parts", p)
			continue
		}
		for _, part := range parts {
			if part == "" {
				v.add(k, "bad pattern %q: empty name part", p)
				break
			}
			if _, err := path.Match(part, ""); err != nil {
				v.add(k, "bad pattern %q: %v", p, err)
				break
			}
		}
	}
}

// StatementKinds returns the statement kinds that policy.rules[].postgres.statements
// accepts, sorted: the kinds of package pg/classify (a test in package policy
// keeps the two lists equal). The slice is new on each call.
func StatementKinds() []string {
	return []string{
		"call", "copy_from", "copy_to", "cursor", "dcl", "ddl", "deallocate", "delete",
		"discard", "do", "execute", "explain", "insert", "listen", "lock", "maintenance",
		"merge", "notify", "other", "prepare", "select", "set", "show", "transaction",
		"truncate", "unlisten", "update",
	}
}

// RedisCategories returns the ACL categories that policy.rules[].redis.categories
// accepts, "@all" first, then Redis 7's categories in the order ACL CAT
// lists them (a test in package policy keeps the list equal to the command
// table's). A rule may write them without the "@" and in any case. The slice
// is new on each call.
func RedisCategories() []string {
	return []string{
		"@all", "@keyspace", "@read", "@write", "@set", "@sortedset", "@list", "@hash",
		"@string", "@bitmap", "@hyperloglog", "@geo", "@stream", "@pubsub", "@admin",
		"@fast", "@slow", "@blocking", "@dangerous", "@connection", "@transaction",
		"@scripting",
	}
}

// ReservedRuleName is the rule name that decisions by policy.default carry;
// no rule or rate limit may have it.
const ReservedRuleName = "default"

// Validate checks the policy section alone (Config.Validate includes it),
// returning every problem joined, each naming its key path.
func (p *Policy) Validate() error {
	v := &validator{}
	v.policy(&Config{Policy: *p})
	return errors.Join(v.errs...)
}

func (v *validator) policy(c *Config) {
	p := c.Policy
	v.oneOf("policy.default", p.Default, "allow", "deny")
	kinds := StatementKinds()
	cats := RedisCategories()
	names := map[string]bool{}
	for i, r := range p.Rules {
		key := keyPath("policy.rules", i)
		switch {
		case r.Name == "":
			v.add(key+".name", "required")
		case r.Name == ReservedRuleName:
			v.add(key+".name", "%q is reserved for policy.default", r.Name)
		case names[r.Name]:
			v.add(key+".name", "rule %q is named twice", r.Name)
		}
		names[r.Name] = true
		v.match(key+".when", r.When)
		v.oneOf(key+".mode", r.Mode, "enforce", "audit")
		if pg := r.Postgres; pg != nil {
			for j, k := range pg.Statements {
				if !slices.Contains(kinds, k) {
					v.add(fmt.Sprintf("%s.postgres.statements[%d]", key, j), "unknown statement kind %q (known: %s)", k, strings.Join(kinds, " "))
				}
			}
			v.objects(key+".postgres.tables", pg.Tables)
			v.objects(key+".postgres.functions", pg.Functions)
			v.oneOf(key+".postgres.on_parse_error", pg.OnParseError, "deny", "allow")
		}
		if rd := r.Redis; rd != nil {
			for j, c := range rd.Commands {
				if c == "" || strings.ContainsAny(c, " \t\r\n") {
					v.add(fmt.Sprintf("%s.redis.commands[%d]", key, j), "bad command name %q", c)
				}
			}
			for j, c := range rd.Categories {
				if !slices.ContainsFunc(cats, func(k string) bool { return strings.EqualFold(k[1:], strings.TrimPrefix(c, "@")) }) {
					v.add(fmt.Sprintf("%s.redis.categories[%d]", key, j), "unknown ACL category %q (known: %s)", c, strings.Join(cats, " "))
				}
			}
			v.patterns(key+".redis.keys", rd.Keys)
		}
	}
	limits := map[string]bool{}
	for i, r := range p.RateLimits {
		key := keyPath("policy.rate_limits", i)
		switch {
		case r.Name == "":
			v.add(key+".name", "required")
		case r.Name == ReservedRuleName:
			v.add(key+".name", "%q is reserved for policy.default", r.Name)
		case limits[r.Name]:
			v.add(key+".name", "rate limit %q is named twice", r.Name)
		}
		limits[r.Name] = true
		v.match(key+".when", r.When)
		if !(r.Rate > 0) || math.IsInf(r.Rate, 0) {
			v.add(key+".rate", "must be > 0 and finite")
		}
		if r.Burst <= 0 {
			v.add(key+".burst", "must be > 0")
		}
		v.oneOf(key+".per", r.Per, "principal", "user", "client", "rule")
		v.oneOf(key+".on_limit", r.OnLimit, "reject", "delay")
		v.nonNegative(key+".max_delay", r.MaxDelay)
	}
}

// anyPort reports a host:0 address: the kernel picks a port, so two of them
// never clash.
func anyPort(addr string) bool { return strings.HasSuffix(addr, ":0") }

// ParseAddress splits a listen or upstream address into a network and an
// address for net.Listen/net.Dial: "unix:/run/pg/.s.PGSQL.6432" is a Unix
// socket, anything else must be host:port with a numeric port.
func ParseAddress(s string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if p == "" {
			return "", "", fmt.Errorf("%q: empty unix socket path", s)
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%q: want host:port or unix:/path", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("%q: bad port %q", s, port)
	}
	_ = host
	return "tcp", s, nil
}
