// Package cli is the outrigger command: `run`, `check`, `version` and
// `policy explain` (how the policy decides on one statement or command, for
// policy-as-code review), signal
// handling and the wiring of config, sidecar core and protocol frontends.
//
// main calls Main and nothing else, so tests start the whole sidecar in their
// own process with Main and Options (their own signal channel, output writers
// and a hook that receives the running *sidecar.Server).
//
// The run loop owns the process lifecycle: it loads the config, applies it,
// then waits. SIGHUP and changes of the config file reload (build the new
// version, swap it in, or reject it whole and keep the running one);
// SIGTERM, SIGINT and POST /drain drain and exit 0.
package cli
