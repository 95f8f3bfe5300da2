// Package redis is Outrigger's RESP frontend: the part of the sidecar that
// speaks the Redis protocol to clients and to upstream Redis servers.
//
// The listener (frontend.go, session.go) serves each client connection with
// a session. Sessions share a few upstream connections per connection state
// (lane.go, upstream.go): a lane's writer batches every queued command into
// one write and its reader matches replies to commands in FIFO order.
// Commands that change a connection's state (MULTI, WATCH, blocking
// commands) take a pinned connection from a bounded pool (package pool) and
// give it back only when it is clean; pub/sub, MONITOR, CLIENT REPLY and
// CLIENT TRACKING turn the session into a passthrough on a connection of its
// own.
//
// Every command a client sends is checked once by the live policy engine
// (policy.go; sidecar.Env.Policy), unless that engine cannot refuse
// anything. PolicyCommand turns a command into the policy's RedisCommand
// from the command table: the lower-case name ("container|sub" for a
// subcommand), the table's shared ACL category names, the key arguments as
// Command.Keys finds them (into a per-session scratch slice, so an allowed
// check does not allocate), and UndeclaredKeys for SORT and SORT_RO with BY
// or GET. The session's principal (mTLS identity, AUTH/HELLO user or
// "default", listener, client address) is resolved into a policy.Session
// once, again when AUTH, HELLO AUTH or RESET change the user, and rebound
// to the engine live at each check, so a reload applies from the next
// command. A refusal is the command's reply, in order (Decision.RedisError);
// inside MULTI it also dooms the transaction: EXEC sends DISCARD upstream
// and answers EXECABORT. A delay is waited on the session's own goroutine
// after its earlier commands are flushed, so the clients sharing its
// upstream connection are not held up. The engine writes the decision log.
//
// Every command ends in one record (observe.go) when its reply is
// written: its outcome (ok, error, proxy_error, denied, rate_limited,
// timeout) and duration through the listener's metrics.RedisRecorder, the
// error_class being the first word of the error reply from a fixed list; a
// line of the access log when sidecar.AccessLog.Want says so; and the end
// of its span when the tracer is on (started when the command is read, a
// trace root: RESP carries no trace context). The command is always named
// from the command table ("unknown" for a command it lacks); keys, values
// and other arguments never reach a metric, a log line or a span. A slot
// carries what the record needs (the refusal's outcome and rule, the
// database, the span); the access log entry is built only when the line is
// wanted, so an ok command allocates nothing. The Handler keeps its
// sessions for GET /clients (clients.go): each session publishes its state
// and last command time in atomics and its user, database and pin reason
// under a lock when they change.
//
// The command table (commands.go, keys.go, blocking.go, flags.go,
// category.go, and commands_gen.go, which is generated from a live
// server's COMMAND reply by internal/gencommands) describes every command
// and subcommand Redis has: arity, flags, ACL categories and key
// specifications. Lookup finds a command's entry from its arguments
// (subcommands included) without allocating; Command.Keys returns its key
// arguments exactly as Redis's COMMAND GETKEYS does (tests compare the two
// on a real server); IsBlocking says whether it may hold its connection;
// ParseCategory and CategoryNames validate the ACL categories that policy
// rules name.
//
// The reply framer (reply.go) reads what an upstream server sends: a
// ReplyReader finds where each RESP2 or RESP3 reply ends (attributes and
// push frames included) without decoding values, within limits on bulk
// size, nesting, aggregate length and reply size, and returns each reply's
// raw bytes, which stay valid until the next call.
//
// Client commands are read by a CommandReader (request.go): the same
// framer in a strict mode for RESP arrays of bulk strings, plus inline
// commands, split as Redis splits them (SplitArgs: quotes and escapes;
// unbalanced quotes are Redis's protocol error). It replaces redcon's reader, which a fuzz target showed to be
// unsafe against hostile clients (a 23-byte multibulk count spun a core
// forever, a huge bulk length panicked, its buffer never shrank, and it
// accepted framing Redis refuses, which a proxy would forward). redcon's
// Append helpers still encode the replies Outrigger writes itself.
//
// Direct replies (direct.go): an ordinary command (not pinned, not
// answered here, with no earlier reply of the client's still waiting in its
// session) is detached from its session once queued on the shared
// connection; the lane's reader appends its reply to the session's buffer
// and writes it to the client with a non-blocking write when nothing more is
// buffered, so the session's goroutine goes back to reading the client at
// once and a command costs no goroutine hand-off. A full client socket hands
// the rest to a backlog writer, so one slow client never holds up the lane.
// Before the session writes, changes state or uses another connection it
// waits for its detached replies (settleDirect), so nothing overtakes them.
// Client and upstream sockets are read and written with raw system calls
// (internal/rawio) when they are plain sockets.
//
// The data flow: a client's command is read, looked up in the command table,
// checked by the policy engine (its name, categories and keys), and written to
// an upstream connection (a dedicated one when IsBlocking says so, or for
// MULTI/WATCH and pub/sub) or answered locally; the upstream's replies are
// framed by a ReplyReader, matched to commands in FIFO order, and forwarded
// to the client as raw bytes, in the order the client sent its commands.
package redis
