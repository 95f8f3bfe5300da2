// Package rawio reads and writes the sockets of Outrigger's protocol
// frontends without the Go runtime's system-call bookkeeping.
//
// A read or write through net.Conn enters the runtime's syscall state: a
// processor (P) stays attached to the thread, and the runtime's monitor
// thread, which wakes every 20 µs while it keeps finding a P in a system
// call and backs off to 10 ms otherwise, may take that P away from a call
// that outlasts one of its ticks and wake another thread to run it.
// Writes to loopback sockets wake the reader on the other end inside the
// call (4-5 µs each on the 2-CPU benchmark machine). Measured there with
// one Redis client: through net.Conn the monitor slept 20 µs at a time
// without end (about 2.5 of its sleeps and 3 futex calls per command, 51 µs
// of CPU per command); with this package it backed off (350 sleeps in 3 s
// under 50 clients) and a command cost 21-23 µs, with the same 2
// runtime threads.
//
// The sockets are non-blocking (the runtime's poller drives them), so a
// read or write returns at once, with EAGAIN when it cannot progress. Conn
// makes those calls with syscall.RawSyscall inside syscall.RawConn's
// Read and Write: the runtime sees no system call, and the poller still
// parks the goroutine on EAGAIN, with deadlines as for any net.Conn.
//
// Wrap wraps a TCP or Unix socket (anything else is returned as it is);
// TryWrite writes what a socket takes without waiting, for a writer that
// must never block on one slow peer (the Redis lane reader's direct
// replies). Neither a read nor a write allocates.
package rawio
