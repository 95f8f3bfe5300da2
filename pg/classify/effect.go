package classify

import "strconv"

// EffectKind says what an Effect does to the session.
type EffectKind uint8

// The session-state effects. Each describes what the statement does if it
// succeeds and its transaction commits: SET, RESET and set_config are
// transactional in Postgres, so a frontend applies an Effect to its record
// of the session only once the statement's transaction has committed (or,
// outside a transaction block, once the statement has completed).
const (
	// EffectSet is a session-level SET (not SET LOCAL, not SET TRANSACTION)
	// or set_config(name, value, false) with constant arguments in a position
	// where it surely runs exactly once. Name is the lower-cased parameter
	// name; SQL is one statement that reproduces the setting on another
	// server connection: the SET itself re-rendered (checked by parsing it
	// back), or SELECT pg_catalog.set_config(...) for set_config.
	// SET SESSION CHARACTERISTICS AS TRANSACTION ... gives one EffectSet per
	// mode, of default_transaction_isolation, default_transaction_read_only
	// and default_transaction_deferrable.
	EffectSet EffectKind = iota + 1
	// EffectReset is RESET name, SET name TO DEFAULT (or SET TIME ZONE LOCAL,
	// or set_config(name, NULL, false)): Name is set, SQL is "RESET name".
	EffectReset
	// EffectResetAll is RESET ALL. Like Postgres, it does not reset role or
	// session_authorization.
	EffectResetAll
	// EffectDiscardAll is DISCARD ALL, which also deallocates every prepared
	// statement, closes cursors, unlistens, releases advisory locks, drops
	// temporary tables and resets every parameter and the role.
	EffectDiscardAll
	// EffectDeallocateAll is DEALLOCATE ALL (also DEALLOCATE PREPARE ALL).
	EffectDeallocateAll
	// EffectPin is something transaction pooling cannot carry across server
	// connections; Reason says what. A frontend pins the client to its server
	// connection for the rest of the session.
	EffectPin
)

// String returns the effect kind's name, e.g. "set" or "pin".
func (k EffectKind) String() string {
	switch k {
	case EffectSet:
		return "set"
	case EffectReset:
		return "reset"
	case EffectResetAll:
		return "reset_all"
	case EffectDiscardAll:
		return "discard_all"
	case EffectDeallocateAll:
		return "deallocate_all"
	case EffectPin:
		return "pin"
	}
	return "EffectKind(" + strconv.Itoa(int(k)) + ")"
}

// Effect is one session-state effect of a statement.
type Effect struct {
	Kind   EffectKind
	Name   string    // the lower-cased parameter name, for EffectSet and EffectReset
	SQL    string    // a statement that reproduces the effect on another connection (all kinds but EffectPin)
	Reason PinReason // why, for EffectPin
}

// PinReason says why a statement pins its client to a server connection.
type PinReason string

// The reasons for EffectPin.
const (
	// PinListen is LISTEN.
	PinListen PinReason = "listen"
	// PinAdvisoryLock is a call of a session-level advisory lock function:
	// pg_advisory_lock, pg_try_advisory_lock and their _shared variants
	// (not pg_advisory_xact_lock*, which end with the transaction), in any
	// schema and wherever the call appears outside a plain EXPLAIN.
	PinAdvisoryLock PinReason = "advisory_lock"
	// PinTempTable is the creation of a temporary object: CREATE TEMP TABLE
	// (unless ON COMMIT DROP), CREATE TEMP VIEW or SEQUENCE, SELECT INTO TEMP,
	// CREATE TEMP TABLE AS, and any DDL that names a pg_temp schema
	// (CREATE TABLE pg_temp.t, CREATE FUNCTION pg_temp.f, CREATE VIEW over a
	// pg_temp table).
	PinTempTable PinReason = "temp_table"
	// PinHoldCursor is DECLARE ... CURSOR WITH HOLD.
	PinHoldCursor PinReason = "with_hold_cursor"
	// PinPrepare is SQL-level PREPARE.
	PinPrepare PinReason = "prepare"
	// PinSetRole is a session-level SET ROLE, SET SESSION AUTHORIZATION,
	// RESET of either, or set_config of role or session_authorization.
	PinSetRole PinReason = "set_role"
	// PinLoad is LOAD.
	PinLoad PinReason = "load"
	// PinDynamicSet is a session-level setting that cannot be replayed by one
	// statement: set_config(..., false) whose name, value or is_local argument
	// is not a constant, or that is not sure to run exactly once (anywhere but
	// directly in the select list of a plain top-level SELECT), SET ... FROM
	// CURRENT, or a SET whose re-rendered text does not parse back to the same
	// statement.
	PinDynamicSet PinReason = "dynamic_set"
	// PinDoBlock is a DO block whose body mentions anything that could change
	// session state (SET, set_config, LISTEN, PREPARE, HOLD, TEMP, LOAD,
	// advisory, DISCARD, DEALLOCATE, EXECUTE, ROLE, AUTHORIZATION): the body is
	// PL/pgSQL, which this package does not parse, so it fails closed.
	PinDoBlock PinReason = "do_block"
)
