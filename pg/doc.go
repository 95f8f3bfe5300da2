// Package pg is the Postgres frontend: a transaction-pooling proxy that
// speaks the wire protocol to clients and keeps a small pool of server
// connections per (database, user).
//
// A client connection is served by a session (session.go). Startup
// (startup.go) answers SSLRequest through the listener's TLS profile,
// GSSENCRequest with N, CancelRequest by forwarding it (cancel.go), and
// reads the StartupMessage; auth.go checks the client (trust, md5,
// scram-sha-256 or cert) and names the upstream credentials, which may be
// the listener's own so the app needs no database secret. Users not in
// the config may be learned from the database (authquery.go: auth_query
// over a small pool, answers cached): the client is checked against the
// verifier Postgres stores, and the ClientKey recovered from its SCRAM
// proof (or the md5 hash) logs in upstream in its place (scram.go), pgconn
// running the login while its proof and the server's signature are
// rewritten on the wire. The client gets Outrigger's own BackendKeyData.
//
// The client goroutine reads client messages, attaches a server from the
// pool when a message needs one, rewrites what transaction pooling requires
// (prepared statement names, prepared.go) and writes to the server once per
// batch of input. In transaction and statement mode it then reads the
// server's replies itself (readInline, relay.go) until the batch is
// answered, so a round trip costs no goroutine hand-off. A relay goroutine,
// one per attachment, reads the server instead where replies may come while
// the client is quiet or must flow as they come: session mode, a pinned
// client, COPY IN/BOTH, a batch without Sync. Either way replies are
// forwarded as raw bytes (decoding only ReadyForQuery, ErrorResponse,
// ParameterStatus, CommandComplete and the extended-protocol
// acknowledgements), and the server goes back at ReadyForQuery 'I' when
// nothing is outstanding. Both paths work from a queue of expected replies
// (queue.go): one item per client message that the server answers, plus
// items Outrigger answers itself (a Parse the server already has, a Close of
// a shared statement) and items whose replies it swallows (a re-preparing
// Parse, the query that brings a server's session parameters in line).
// Client and server sockets are read and written with raw system calls
// (internal/rawio) when they are plain sockets.
//
// Session state follows the client: every parameter it set (in the
// StartupMessage, with SET, RESET or set_config, found by pg/classify) is
// replayed on whichever server it lands on (params.go; equal settings are
// interned, so the check before each transaction is a pointer comparison);
// state that cannot
// be replayed (LISTEN, session advisory locks, temporary tables, WITH HOLD
// cursors, SQL PREPARE, SET ROLE, LOAD) pins the client to its server, or
// is refused (pool.on_session_state). A server that comes back dirty is
// rolled back and reset, or closed: never lent out dirty.
package pg
