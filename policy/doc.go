// Package policy decides, for every Postgres statement string and every
// Redis command, whether it may run: identity-based ACL rules and token-bucket
// rate limits, compiled from the config's policy section.
//
// # Data flow
//
//	config.Policy --Compile--> *Engine               once per config version
//	Principal ----Session----> *Session              once per client session
//	*classify.Result --CheckPostgres--> Decision     once per statement string
//	RedisCommand ----CheckRedis-------> Decision     once per command
//
// Compile validates the policy section and compiles it: each rule's `when`
// into matchers, its postgres and redis sections into lists of allowed
// statement kinds, table, function and key patterns, command names and ACL
// categories, and each rate limit into its buckets. It builds the handler
// chain (chain.go; Engine.links declares its order) once. An Engine is
// immutable; a reload compiles a new one (WithPrevious keeps the buckets of
// unchanged rate limits) that the frontends swap in atomically.
//
// A frontend calls Engine.Session when it knows who the client is: the mTLS
// identity (SPIFFE URI SAN, else CN), the authenticated user, the database,
// the listener and the client address. The first rule whose `when` matches
// governs the session (none: policy.default, allow or deny), and every rate
// limit whose `when` matches applies to it; both are resolved here, once.
// Before each check the frontend calls Rebind with the engine that is live
// now, which returns the same session until a reload.
//
// Each check is a Request handed down the chain: counting (with
// WithMetrics) → always allowed (transaction control; Redis MULTI, EXEC,
// DISCARD, UNWATCH, PING, ECHO, QUIT, AUTH, HELLO) → rate limits → the
// governing rule → the default. A link answers or calls the next one. The
// answer is a Decision: Allow (after Delay, when a rate limit with
// on_limit: delay makes the request wait; the caller sleeps), Deny naming
// the rule, or RateLimited naming the rate limit. Decision.PostgresError
// and Decision.RedisError render refusals the same way for every frontend
// (SQLSTATE 42501 and 53400; -NOPERM and -ERR rate limited). A rule in
// audit mode allows what it would deny and sets Audit: the caller logs
// Message. A check that allows without delay does not allocate.
//
// # What a rule allows
//
// A rule without a postgres (redis) section allows no Postgres statement
// (Redis command) beyond the always-allowed ones. Within a section, an
// empty list does not restrict.
//
// Postgres: the classification (package pg/classify, the real Postgres
// parser) covers the whole text, all statements. Every kind that a
// statement performs anywhere (Statement.Kinds: a DELETE in a CTE, the
// statement under EXPLAIN ANALYZE, the query of CREATE TABLE AS, ...) must
// be listed, except transaction control. A rule that lists only read-only
// kinds (select, show, explain, copy_to, transaction) also refuses
// statements classify does not find ReadOnly: writing functions it knows
// (nextval, setval, set_config, advisory locks, lo_*), FOR UPDATE/SHARE,
// COPY TO a server file or program, two-phase commit. Every table
// (anywhere: joins, subqueries, CTE bodies, DML and COPY targets) and every
// function called must match the rule's lists, when it has them. SQL the
// parser rejects is refused by a rule that restricts anything, unless its
// on_parse_error is allow.
//
// Table names: a pattern or a name without a schema is taken to be in the
// schema the default search_path resolves it to: pg_catalog for a name
// beginning with "pg_" (pg_catalog is searched first, and all its relations
// begin so), else public. So the pattern "public.orders" (or "orders")
// allows both `FROM orders` and `FROM public.orders`, and "public.*" does
// not allow `FROM pg_authid`. Names are compared as Postgres stores them:
// lower case unless quoted; a part that contains '.' or '"' is written
// double-quoted ("My.Schema".t). A session that changes search_path away
// from the default would make unqualified names resolve elsewhere: a rule
// that restricts tables should not allow the set kind (it does not unless
// it lists it), and a frontend should not let a session under such a rule
// set search_path in its startup parameters.
//
// Function names are matched as the statement writes them, because an
// unqualified call may resolve to pg_catalog or to public: "lower" allows
// lower(x), "pg_catalog.*" allows pg_catalog.lower(x) and the functions
// that SQL syntax stands for (pg_catalog.extract, pg_catalog.timezone).
// What a function or procedure does inside is invisible to any classifier;
// list the functions a restricted principal may call.
//
// Patterns of `when`, tables and functions are path.Match globs (per name
// part for tables and functions), except that "*" alone matches every
// value. A `when` pattern never matches an empty value: principal "*"
// matches every session with a client certificate, not those without.
// Source is a CIDR when it has a '/', else a glob on the address text.
//
// Redis: a command is allowed when its name, its container's name (a rule
// listing "client" allows "client|list"), or one of its ACL categories is
// listed ("@all" allows every command). When the rule lists keys, each key
// the caller found at the command's key positions must match a key pattern
// (Redis glob semantics: '*' matches '/' too); a key-less command passes,
// as in Redis's ACL, so refuse FLUSHDB, KEYS, SCAN and RANDOMKEY by
// category (@keyspace, @dangerous) where that matters. Scripts are checked
// on their declared keys only.
//
// # Rate limits
//
// Each rate limit is a golang.org/x/time/rate token bucket (rate per
// second, burst) per principal, user, client (session) or rule. Buckets
// per principal and per user are shared by the sessions with that key and
// held in an LRU of at most WithMaxBuckets (default DefaultMaxBuckets) keys
// per rate limit; the session resolves its bucket once, so the LRU is
// touched once per session, not per check. Every applicable limit takes a
// token per check; when one refuses, the tokens taken from the others are
// given back. on_limit: reject refuses when the bucket is empty; delay
// reserves the next token and sets Decision.Delay, up to max_delay, beyond
// which it refuses. Transaction control and the always-allowed Redis
// commands take no token.
//
// # Metrics
//
// With WithMetrics every check counts one outrigger_policy_decisions_total
// {listener, rule, decision}; the series are resolved once per engine and
// (listener, rule), so counting is one atomic add.
package policy
