// Command loopgate measures what a request/response relay costs in the
// proxy's process, goroutine per client (the frontends' design today)
// against github.com/panjf2000/gnet/v2 event loops (a client's socket and
// its upstream's on one loop, so a round trip is two writes from the loop
// that read, with no hand-off): CPU per round trip and throughput with 64
// (CLIENTS) clients doing 100-byte ping-pongs through each relay to an echo
// backend, ROUNDS rounds of 5 s interleaved, then RSS per idle client at
// 5000 clients. It is the gate for moving the frontends onto event loops:
// the relay is the part of a Postgres round trip that the loops change.
//
// It is its own module, so the main module does not depend on gnet before
// the frontends use it. Run it with make bench-loopgate.
package main
