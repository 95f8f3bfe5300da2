// Package classify classifies SQL text with the real Postgres parser
// (github.com/pganalyze/pg_query_go/v6, libpg_query compiled in through cgo).
//
// It serves two users:
//
//   - the Postgres frontend (package pg), which must see every statement that
//     changes session state, so that transaction pooling never leaks one
//     client's session state into another's and never loses it: each
//     Statement carries its Effects (a SET to replay on the next server
//     connection, a RESET, RESET ALL, DISCARD ALL, DEALLOCATE ALL, or a pin
//     for what cannot be carried across connections: LISTEN, session advisory
//     locks, temporary tables, WITH HOLD cursors, SQL-level PREPARE, SET ROLE,
//     LOAD, unreplayable settings, DO blocks that may do any of these), and
//     TxBegin/TxEnd for BEGIN and COMMIT/ROLLBACK;
//   - the policy engine, which allows or denies by statement Kinds, Tables and
//     Functions, and may route on ReadOnly.
//
// # Data flow
//
// Classify passes the text to pg_query.Parse, which returns the raw parse
// tree (before name resolution) as protobuf messages, one RawStmt per
// top-level statement. For each, a walker visits every message of the tree:
// walk.go handles the node types that matter (statements, RangeVar, FuncCall,
// WITH clauses and FROM items for CTE scoping, INTO clauses, ...) and hands
// every other node to walk_gen.go, a type switch generated from pg_query.pb.go
// by internal/walkgen (`go generate`) that visits each message-typed field.
// The walk uses no reflection; a test checks it against a protoreflect walk
// so that no field is ever skipped, also after a pg_query_go upgrade.
//
// # Use on the hot path
//
// Parsing costs microseconds per statement (about 13 µs for a pgbench
// SELECT, most of it in libpg_query and protobuf decoding), so the frontend:
//
//   - calls MayAffectSession first when all it needs is Effects: an
//     allocation-free keyword scan (about 0.1 µs) that is never false for
//     text that has an Effect; only a true answer needs the parser;
//   - otherwise goes through a Cache, a bounded LRU keyed by the exact text
//     (a hit costs tens of nanoseconds and no allocation). Results are shared
//     and must not be modified. Texts longer than MaxCachedSQL are not cached.
//
// Classify, the Cache and MayAffectSession are safe for concurrent use.
//
// # Failing closed
//
// When unsure, the classification reports more, never less:
//
//   - a parse error gives Result.Err and no statements; text with a zero byte
//     gives ErrZeroByte; a bug in the walker gives an *InternalError rather
//     than a panic. A frontend treats any Err as a statement it cannot
//     judge: it does not pool it on assumptions and the policy does not allow
//     it by kind;
//   - a statement type this package does not know is KindOther;
//   - an Effect that cannot be replayed exactly becomes a pin: set_config
//     with a non-constant argument or anywhere but directly in the select list
//     of a plain top-level SELECT, SET ... FROM CURRENT, a SET whose re-rendered
//     text does not parse back to the very same statement, a DO block whose
//     body mentions session-changing words;
//   - advisory-lock pins count calls wherever they appear (in any schema) and
//     temporary-object pins count any pg_temp name in DDL;
//   - every ';' counts as a possible statement end for MayAffectSession.
//
// Some things no SQL classifier can see, and this one does not pretend to:
// what user-defined functions, procedures (CALL) and triggers do inside
// (a function may call set_config or take an advisory lock), session state
// that ordinary statements create implicitly (currval/lastval after an
// INSERT with a serial column), and the body of EXECUTE'd prepared
// statements (PREPARE pins the session anyway).
//
// The parser lexes with standard_conforming_strings = on, as Postgres does
// by default. A session that turns it off lexes backslashes in '...' literals
// differently from this package, so a frontend must pin or refuse such a
// session (the SET that turns it off is itself an EffectSet of
// standard_conforming_strings).
//
// Effects describe what a statement does if it succeeds and its transaction
// commits: SET, RESET and set_config are transactional, so a frontend applies
// them to its record of the session when the statement's transaction commits,
// and drops them when it rolls back.
//
// # Normalised text for logs and spans
//
// A Normalizer turns SQL into text safe to log: pg_query's Normalize
// replaces every literal with a placeholder ($1, $2, ... after the text's
// own parameters), through a bounded LRU keyed by the exact text like the
// Cache. Text the parser rejects becomes Unparsable, never itself.
package classify
