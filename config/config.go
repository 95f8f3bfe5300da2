package config

import (
	"strconv"
	"time"
)

// Config is the whole configuration of one Outrigger process. The keys below are
// the contract that README.md, docs/configuration.md and the examples rely on.
// Each field's `default` tag is its documented default.
type Config struct {
	Admin    Admin                 `koanf:"admin" json:"admin"`
	Log      Log                   `koanf:"log" json:"log"`
	Shutdown Shutdown              `koanf:"shutdown" json:"shutdown"`
	Reload   Reload                `koanf:"reload" json:"reload"`
	Runtime  Runtime               `koanf:"runtime" json:"runtime"`
	TLS      map[string]TLSProfile `koanf:"tls" json:"tls,omitempty"`
	Postgres []Postgres            `koanf:"postgres" json:"postgres,omitempty"`
	Redis    []Redis               `koanf:"redis" json:"redis,omitempty"`
	TCP      []TCP                 `koanf:"tcp" json:"tcp,omitempty"`
	HTTP     []HTTP                `koanf:"http" json:"http,omitempty"`
	Policy   Policy                `koanf:"policy" json:"policy"`
	// AccessLog is the per-request access log of the postgres and redis
	// listeners.
	AccessLog AccessLog `koanf:"access_log" json:"access_log"`
	// Tracing exports OpenTelemetry spans; off unless an endpoint is set.
	Tracing Tracing `koanf:"tracing" json:"tracing"`

	// Path is the file the config was loaded from ("" when built in code).
	Path string `koanf:"-" json:"-"`
}

// Admin is the admin HTTP server: /metrics, /healthz, /readyz, /config, /pools,
// /debug/pprof/ and POST /drain.
type Admin struct {
	// Listen is the admin address; "off" disables the admin server.
	Listen string `koanf:"listen" json:"listen" default:"127.0.0.1:9901"`
}

// Log sets the process log.
type Log struct {
	Level  string `koanf:"level" json:"level" default:"info"`   // debug | info | warn | error
	Format string `koanf:"format" json:"format" default:"json"` // json | text
}

// Shutdown governs SIGTERM/SIGINT and POST /drain.
type Shutdown struct {
	// DrainTimeout is how long in-flight connections may run after the listeners
	// stop accepting; the rest are closed when it passes.
	DrainTimeout time.Duration `koanf:"drain_timeout" json:"drain_timeout" default:"30s"`
}

// Runtime tunes the Go runtime the process runs on.
type Runtime struct {
	// MaxProcs is how many threads may run Outrigger's code at once
	// (GOMAXPROCS): a number, or "auto" for half the CPUs the Go runtime
	// would use by itself (the CPUs of the machine, within a cgroup CPU
	// limit), rounded up. A sidecar shares its CPUs with the application
	// and often the database it proxies; its work is mostly system calls,
	// and a second runtime thread mostly costs more CPU in thread wake-ups
	// than it adds (see docs/operations.md). With "auto", a GOMAXPROCS environment
	// variable wins.
	MaxProcs string `koanf:"max_procs" json:"max_procs" default:"auto"`
}

// Procs is the GOMAXPROCS that MaxProcs asks for, given the runtime's
// own default (runtime.GOMAXPROCS(0) at start) and whether GOMAXPROCS was
// set in the environment. MaxProcs must be valid (Validate).
func (r Runtime) Procs(runtimeDefault int, envSet bool) int {
	if n, err := strconv.Atoi(r.MaxProcs); err == nil {
		return n
	}
	if envSet {
		return runtimeDefault
	}
	return max(1, (runtimeDefault+1)/2)
}

// Reload governs live reload of the config file.
type Reload struct {
	// Watch reloads when the config file changes (SIGHUP always reloads).
	Watch bool `koanf:"watch" json:"watch" default:"true"`
	// Debounce waits for a burst of file events to settle before reloading.
	Debounce time.Duration `koanf:"debounce" json:"debounce" default:"200ms"`
}

// AccessLog is the access log: one JSON line per Postgres round trip or
// Redis command, for a sample of them and for every slow or failed one.
// Parameter values and Redis values are never logged; SQL text is logged
// with its literals replaced by placeholders.
type AccessLog struct {
	Enabled bool `koanf:"enabled" json:"enabled" default:"false"`
	// Output is stderr | stdout | a file path (appended to, created 0600).
	Output string `koanf:"output" json:"output" default:"stderr"`
	// SampleRate is the share (0 to 1) of successful, fast requests logged.
	SampleRate float64 `koanf:"sample_rate" json:"sample_rate" default:"0.01"`
	// SlowThreshold: every request that took at least this long is logged.
	SlowThreshold time.Duration `koanf:"slow_threshold" json:"slow_threshold" default:"1s"`
	// MaxStatementLength truncates logged statements to this many bytes.
	MaxStatementLength int `koanf:"max_statement_length" json:"max_statement_length" default:"2048"`
}

// Tracing exports OpenTelemetry spans over OTLP/HTTP (protobuf).
type Tracing struct {
	// Endpoint is the OTLP/HTTP traces URL of a collector
	// (http://127.0.0.1:4318/v1/traces); "" turns tracing off.
	Endpoint string `koanf:"endpoint" json:"endpoint,omitempty"`
	// SampleRatio is the share (0 to 1) of new traces sampled; a request
	// whose client sent a sampled trace context is always traced.
	SampleRatio float64 `koanf:"sample_ratio" json:"sample_ratio" default:"0.01"`
	// ServiceName is the service.name resource attribute of the spans.
	ServiceName string `koanf:"service_name" json:"service_name" default:"outrigger"`
}

// TLSProfile is a named server-side TLS setup that listeners refer to by name.
// Certificate, key and CA are re-read from disk when they change.
type TLSProfile struct {
	Cert string `koanf:"cert" json:"cert"`
	Key  string `koanf:"key" json:"key"`
	// CA is the bundle that client certificates are verified against.
	CA string `koanf:"ca" json:"ca,omitempty"`
	// ClientAuth is none | request | require.
	ClientAuth string `koanf:"client_auth" json:"client_auth" default:"none"`
	// MinVersion is 1.2 | 1.3.
	MinVersion string `koanf:"min_version" json:"min_version" default:"1.2"`
	// ReloadInterval is how often the files are checked for change.
	ReloadInterval time.Duration `koanf:"reload_interval" json:"reload_interval" default:"10s"`
}

// Upstream is where a listener sends traffic.
type Upstream struct {
	// Address is one upstream address (host:port or unix:/path).
	Address string `koanf:"address" json:"address,omitempty"`
	// Addresses are several upstream addresses, used round-robin.
	Addresses      []string      `koanf:"addresses" json:"addresses,omitempty"`
	ConnectTimeout time.Duration `koanf:"connect_timeout" json:"connect_timeout" default:"5s"`
	// Backoff is how long an address that failed to connect is skipped; it
	// doubles with each further failure up to MaxBackoff.
	Backoff    time.Duration `koanf:"backoff" json:"backoff" default:"1s"`
	MaxBackoff time.Duration `koanf:"max_backoff" json:"max_backoff" default:"30s"`
	TLS        UpstreamTLS   `koanf:"tls" json:"tls"`
}

// AllAddresses returns Address and Addresses as one list.
func (u Upstream) AllAddresses() []string {
	out := make([]string, 0, 1+len(u.Addresses))
	if u.Address != "" {
		out = append(out, u.Address)
	}
	return append(out, u.Addresses...)
}

// UpstreamTLS is TLS origination towards an upstream.
type UpstreamTLS struct {
	// Mode is disable | require | verify-ca | verify-full.
	Mode string `koanf:"mode" json:"mode" default:"disable"`
	// CA verifies the upstream's certificate (verify-ca, verify-full).
	CA string `koanf:"ca" json:"ca,omitempty"`
	// Cert and Key are a client certificate for upstream mTLS.
	Cert string `koanf:"cert" json:"cert,omitempty"`
	Key  string `koanf:"key" json:"key,omitempty"`
	// ServerName overrides the name checked by verify-full and sent as SNI.
	ServerName string `koanf:"server_name" json:"server_name,omitempty"`
}

// Listener holds what every listener has.
type Listener struct {
	Name string `koanf:"name" json:"name"`
	// Listen is host:port or unix:/path.
	Listen string `koanf:"listen" json:"listen"`
	// TLS names a profile under tls: for client-facing TLS ("" = plaintext).
	TLS string `koanf:"tls" json:"tls,omitempty"`
	// MaxConnections caps concurrent client connections; more are refused.
	MaxConnections int `koanf:"max_connections" json:"max_connections" default:"10000"`
}

// TCP is an L4 proxy listener.
type TCP struct {
	Listener `koanf:",squash"`
	Upstream Upstream `koanf:"upstream" json:"upstream"`
	// IdleTimeout closes a connection with no traffic in either direction.
	IdleTimeout time.Duration `koanf:"idle_timeout" json:"idle_timeout" default:"1h"`
}

// HTTP is a reverse-proxy listener.
type HTTP struct {
	Listener          `koanf:",squash"`
	Routes            []Route       `koanf:"routes" json:"routes"`
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout" json:"read_header_timeout" default:"10s"`
	// IdleTimeout closes client keep-alive connections left idle this long.
	IdleTimeout time.Duration `koanf:"idle_timeout" json:"idle_timeout" default:"90s"`
	RetryBudget RetryBudget   `koanf:"retry_budget" json:"retry_budget"`
}

// Route sends requests that match Host (if set) and Prefix to Upstream.
type Route struct {
	Prefix   string   `koanf:"prefix" json:"prefix" default:"/"`
	Host     string   `koanf:"host" json:"host,omitempty"`
	Upstream Upstream `koanf:"upstream" json:"upstream"`
	// Timeout bounds the whole upstream exchange up to the response headers; 504 after it.
	Timeout time.Duration `koanf:"timeout" json:"timeout" default:"15s"`
	// Retries is the number of extra attempts on connect failure (any method) or
	// on 502/503/504 (idempotent methods only).
	Retries int `koanf:"retries" json:"retries" default:"2"`
}

// RetryBudget caps retries as a share of requests, so retries cannot multiply
// load on an upstream that is already failing.
type RetryBudget struct {
	// Ratio is retries allowed per request over a 10 s window.
	Ratio float64 `koanf:"ratio" json:"ratio" default:"0.2"`
	// MinPerSecond retries are always allowed, whatever the ratio.
	MinPerSecond int `koanf:"min_per_second" json:"min_per_second" default:"10"`
}

// Postgres is a Postgres wire-protocol listener.
type Postgres struct {
	Listener `koanf:",squash"`
	Upstream Upstream `koanf:"upstream" json:"upstream"`
	Pool     PGPool   `koanf:"pool" json:"pool"`
	Auth     PGAuth   `koanf:"auth" json:"auth"`
	// AdminUsers may connect to the virtual database "outrigger" for the
	// admin console (SHOW POOLS, PAUSE, ...), authenticating as any user.
	AdminUsers []string `koanf:"admin_users" json:"admin_users,omitempty"`
	// MaxMessageSize refuses a client message longer than this (08P01)
	// without reading it into memory.
	MaxMessageSize int `koanf:"max_message_size" json:"max_message_size" default:"67108864"`
}

// PGPool is the server connection pool of a Postgres listener, per (database, user).
type PGPool struct {
	Mode                     string        `koanf:"mode" json:"mode" default:"transaction"` // session | transaction | statement
	Size                     int           `koanf:"size" json:"size" default:"20"`
	MinIdle                  int           `koanf:"min_idle" json:"min_idle" default:"0"`
	MaxClients               int           `koanf:"max_clients" json:"max_clients" default:"10000"`
	AcquireTimeout           time.Duration `koanf:"acquire_timeout" json:"acquire_timeout" default:"5s"`
	ServerIdleTimeout        time.Duration `koanf:"server_idle_timeout" json:"server_idle_timeout" default:"10m"`
	ServerLifetime           time.Duration `koanf:"server_lifetime" json:"server_lifetime" default:"1h"`
	IdleInTransactionTimeout time.Duration `koanf:"idle_in_transaction_timeout" json:"idle_in_transaction_timeout" default:"0s"`
	QueryTimeout             time.Duration `koanf:"query_timeout" json:"query_timeout" default:"0s"`
	ClientIdleTimeout        time.Duration `koanf:"client_idle_timeout" json:"client_idle_timeout" default:"0s"`
	// TransactionTimeout ends a client whose transaction has been open
	// this long (0: no limit); auth.users[].transaction_timeout overrides
	// it per user.
	TransactionTimeout time.Duration `koanf:"transaction_timeout" json:"transaction_timeout" default:"0s"`
	// QueryWaitNotify sends a client queued for a server this long a
	// NOTICE (0: none).
	QueryWaitNotify time.Duration `koanf:"query_wait_notify" json:"query_wait_notify" default:"0s"`
	// MaxUserClients and MaxDBClients bound the clients of one user and of
	// one database (0: no limit).
	MaxUserClients        int    `koanf:"max_user_client_connections" json:"max_user_client_connections" default:"0"`
	MaxDBClients          int    `koanf:"max_db_client_connections" json:"max_db_client_connections" default:"0"`
	ResetQuery            string `koanf:"reset_query" json:"reset_query" default:"DISCARD ALL"`
	MaxPreparedStatements int    `koanf:"max_prepared_statements" json:"max_prepared_statements" default:"200"`
	// OnSessionState is what transaction and statement pooling do with
	// session state that cannot follow a client across server connections
	// (LISTEN, session advisory locks, temporary tables, WITH HOLD cursors,
	// SQL PREPARE, SET ROLE, LOAD): pin (keep the client on its server for
	// the rest of its session) | error (refuse the statement, 0A000).
	OnSessionState string `koanf:"on_session_state" json:"on_session_state" default:"pin"`
}

// PGAuth is client authentication on a Postgres listener.
type PGAuth struct {
	Method string   `koanf:"method" json:"method" default:"scram-sha-256"` // trust | md5 | scram-sha-256 | cert
	Users  []PGUser `koanf:"users" json:"users,omitempty"`
	// AuthUser, when set, has Outrigger learn users that are not in Users
	// from the database: it runs AuthQuery as this user (with AuthPassword)
	// and checks the client against the verifier the query returns, then
	// logs in upstream with the client's own SCRAM proof (or md5 hash).
	AuthUser         string `koanf:"auth_user" json:"auth_user,omitempty"`
	AuthPassword     Secret `koanf:"auth_password" json:"auth_password,omitempty"`
	AuthPasswordFile string `koanf:"auth_password_file" json:"auth_password_file,omitempty"`
	// AuthQuery takes the user name as $1 and returns (name, password
	// verifier); NULL or no row means no such user.
	AuthQuery string `koanf:"auth_query" json:"auth_query" default:"SELECT usename, passwd FROM pg_shadow WHERE usename=$1"`
	// AuthDatabase is the database AuthQuery runs in ("": the one the
	// client asked for).
	AuthDatabase string `koanf:"auth_database" json:"auth_database,omitempty"`
	// AuthCacheTTL is how long a query's answer (a verifier, or that the
	// user does not exist) is used before the query runs again.
	AuthCacheTTL time.Duration `koanf:"auth_cache_ttl" json:"auth_cache_ttl" default:"30s"`
	// AuthPoolSize bounds the connections AuthQuery runs on, per database.
	AuthPoolSize int `koanf:"auth_pool_size" json:"auth_pool_size" default:"2"`
}

// PGUser is a database user that clients may log in as.
type PGUser struct {
	Name string `koanf:"name" json:"name"`
	// Password may be a literal or hold ${ENV} references.
	Password Secret `koanf:"password" json:"password,omitempty"`
	// PasswordFile is read at load time; surrounding whitespace is trimmed.
	PasswordFile string `koanf:"password_file" json:"password_file,omitempty"`
	// Principals are the mTLS identities (SPIFFE URI or CN, globs allowed)
	// that may log in as this user with auth.method cert.
	Principals []string `koanf:"principals" json:"principals,omitempty"`
	// UpstreamUser and UpstreamPassword are the credentials Outrigger logs
	// in to Postgres with for this user ("" user: the same name; "" password:
	// the client's password, or none), so the app needs no database secret.
	UpstreamUser         string `koanf:"upstream_user" json:"upstream_user,omitempty"`
	UpstreamPassword     Secret `koanf:"upstream_password" json:"upstream_password,omitempty"`
	UpstreamPasswordFile string `koanf:"upstream_password_file" json:"upstream_password_file,omitempty"`
	// TransactionTimeout overrides pool.transaction_timeout for this user
	// (0: the pool's).
	TransactionTimeout time.Duration `koanf:"transaction_timeout" json:"transaction_timeout,omitempty"`
}

// Redis is a RESP listener.
type Redis struct {
	Listener `koanf:",squash"`
	Upstream Upstream  `koanf:"upstream" json:"upstream"`
	Pool     RedisPool `koanf:"pool" json:"pool"`
	// MaxPipeline caps the replies one client may have outstanding; past it
	// Outrigger stops reading that client until replies go out.
	MaxPipeline int `koanf:"max_pipeline" json:"max_pipeline" default:"1024"`
	// MaxCommandBytes caps one command's size (and what one client may send
	// ahead of a complete command).
	MaxCommandBytes int       `koanf:"max_command_bytes" json:"max_command_bytes" default:"536870912"`
	Auth            RedisAuth `koanf:"auth" json:"auth"`
	// RefuseCommands are answered with an error instead of being forwarded
	// (names as in COMMAND, subcommands as "client|kill").
	RefuseCommands []string `koanf:"refuse_commands" json:"refuse_commands" default:"[sync, psync, replconf]"`
}

// RedisAuth is client authentication on a Redis listener. Without users,
// AUTH and HELLO AUTH go to the upstream as the client sent them.
type RedisAuth struct {
	// Users are Outrigger's own users: a client that authenticates as one
	// is connected upstream as that user's upstream_user, so the app needs
	// no Redis secret.
	Users []RedisUser `koanf:"users" json:"users,omitempty"`
	// Required answers every command but AUTH, HELLO, PING and QUIT with
	// NOAUTH until the client has authenticated as one of users.
	Required bool `koanf:"required" json:"required" default:"false"`
	// UpstreamUser and UpstreamPassword are what clients that did not
	// authenticate are connected upstream as ("" : no AUTH).
	UpstreamUser     string `koanf:"upstream_user" json:"upstream_user,omitempty"`
	UpstreamPassword Secret `koanf:"upstream_password" json:"upstream_password,omitempty"`
}

// RedisUser is one of Outrigger's own Redis users.
type RedisUser struct {
	Name string `koanf:"name" json:"name"`
	// Password may be a literal or hold ${ENV} references.
	Password     Secret `koanf:"password" json:"password,omitempty"`
	PasswordFile string `koanf:"password_file" json:"password_file,omitempty"`
	// UpstreamUser and UpstreamPassword are the Redis ACL user this user is
	// connected as ("" user: the default user).
	UpstreamUser         string `koanf:"upstream_user" json:"upstream_user,omitempty"`
	UpstreamPassword     Secret `koanf:"upstream_password" json:"upstream_password,omitempty"`
	UpstreamPasswordFile string `koanf:"upstream_password_file" json:"upstream_password_file,omitempty"`
}

// RedisPool sizes the shared (multiplexed) and pinned upstream connections.
type RedisPool struct {
	// Size is the number of shared, pipelined upstream connections.
	Size int `koanf:"size" json:"size" default:"4"`
	// PinnedSize caps dedicated connections (MULTI, blocking commands, pub/sub).
	PinnedSize     int           `koanf:"pinned_size" json:"pinned_size" default:"64"`
	CommandTimeout time.Duration `koanf:"command_timeout" json:"command_timeout" default:"5s"`
}

// Policy is identity-based ACL and rate limiting for every query and command.
type Policy struct {
	// Default is allow | deny, for a session that no rule's when matches.
	Default    string      `koanf:"default" json:"default" default:"allow"`
	Rules      []Rule      `koanf:"rules" json:"rules,omitempty"`
	RateLimits []RateLimit `koanf:"rate_limits" json:"rate_limits,omitempty"`
}

// Match selects sessions; every non-empty field must match (exact or glob,
// path.Match syntax; "*" alone matches every non-empty value). A non-empty
// field never matches a session that lacks the value (no client
// certificate, a Unix-socket client).
type Match struct {
	// Principal is the client certificate's SPIFFE URI SAN, else its CN.
	Principal string `koanf:"principal" json:"principal,omitempty"`
	User      string `koanf:"user" json:"user,omitempty"`
	Database  string `koanf:"database" json:"database,omitempty"`
	Listener  string `koanf:"listener" json:"listener,omitempty"`
	// Source is a client address CIDR (when it has a '/') or a glob on the
	// address written as text.
	Source string `koanf:"source" json:"source,omitempty"`
}

// Rule governs the sessions its When matches.
type Rule struct {
	Name     string        `koanf:"name" json:"name"`
	When     Match         `koanf:"when" json:"when"`
	Postgres *PostgresRule `koanf:"postgres" json:"postgres,omitempty"`
	Redis    *RedisRule    `koanf:"redis" json:"redis,omitempty"`
	// Mode is enforce | audit (log what would be denied, deny nothing).
	Mode string `koanf:"mode" json:"mode" default:"enforce"`
	// Message is added to the error a denied client receives.
	Message string `koanf:"message" json:"message,omitempty"`
}

// PostgresRule lists what a rule allows on Postgres listeners. An empty
// list does not restrict; a rule without a postgres section allows no
// Postgres statement at all.
type PostgresRule struct {
	// Statements are statement kinds (see StatementKinds).
	Statements []string `koanf:"statements" json:"statements,omitempty"`
	// Tables are table globs, "schema.name" or "name" (schema public).
	Tables []string `koanf:"tables" json:"tables,omitempty"`
	// Functions are function globs, matched as the statement names them.
	Functions []string `koanf:"functions" json:"functions,omitempty"`
	// OnParseError is deny | allow: what happens to SQL the parser rejects
	// when the rule restricts statements, tables or functions.
	OnParseError string `koanf:"on_parse_error" json:"on_parse_error" default:"deny"`
}

// RedisRule lists what a rule allows on Redis listeners. An empty list does
// not restrict; a rule without a redis section allows no Redis command
// beyond the few that are always allowed.
type RedisRule struct {
	// Commands are command names ("get", "client|list"; "client" allows
	// every CLIENT subcommand).
	Commands []string `koanf:"commands" json:"commands,omitempty"`
	// Categories are ACL categories (see RedisCategories).
	Categories []string `koanf:"categories" json:"categories,omitempty"`
	// Keys are key globs with Redis's glob semantics.
	Keys []string `koanf:"keys" json:"keys,omitempty"`
}

// RateLimit is a token bucket applied to the sessions When matches.
type RateLimit struct {
	Name  string  `koanf:"name" json:"name"`
	When  Match   `koanf:"when" json:"when"`
	Rate  float64 `koanf:"rate" json:"rate"`
	Burst int     `koanf:"burst" json:"burst"`
	// Per keys the bucket: principal | user | client | rule.
	Per string `koanf:"per" json:"per" default:"principal"`
	// OnLimit is reject | delay.
	OnLimit  string        `koanf:"on_limit" json:"on_limit" default:"reject"`
	MaxDelay time.Duration `koanf:"max_delay" json:"max_delay" default:"100ms"`
}

// ListenerKind names the kind of a listener section.
type ListenerKind string

// Listener kinds, one per top-level section.
const (
	KindPostgres ListenerKind = "postgres"
	KindRedis    ListenerKind = "redis"
	KindTCP      ListenerKind = "tcp"
	KindHTTP     ListenerKind = "http"
)

// ListenerRef is one listener of any kind, with its full section.
type ListenerRef struct {
	Kind ListenerKind
	// Path is its key path, such as "tcp[2]".
	Path string
	Listener
	// Section is the *Postgres, *Redis, *TCP or *HTTP it came from.
	Section any
}

// Listeners returns every listener in the config, in section order.
func (c *Config) Listeners() []ListenerRef {
	var out []ListenerRef
	for i := range c.Postgres {
		out = append(out, ListenerRef{KindPostgres, keyPath("postgres", i), c.Postgres[i].Listener, &c.Postgres[i]})
	}
	for i := range c.Redis {
		out = append(out, ListenerRef{KindRedis, keyPath("redis", i), c.Redis[i].Listener, &c.Redis[i]})
	}
	for i := range c.TCP {
		out = append(out, ListenerRef{KindTCP, keyPath("tcp", i), c.TCP[i].Listener, &c.TCP[i]})
	}
	for i := range c.HTTP {
		out = append(out, ListenerRef{KindHTTP, keyPath("http", i), c.HTTP[i].Listener, &c.HTTP[i]})
	}
	return out
}

// Upstreams returns every upstream a listener section sends to (one per
// route for http).
func (r ListenerRef) Upstreams() []Upstream {
	switch s := r.Section.(type) {
	case *TCP:
		return []Upstream{s.Upstream}
	case *Postgres:
		return []Upstream{s.Upstream}
	case *Redis:
		return []Upstream{s.Upstream}
	case *HTTP:
		out := make([]Upstream, len(s.Routes))
		for i, rt := range s.Routes {
			out[i] = rt.Upstream
		}
		return out
	}
	return nil
}
