package classify

import "sort"

// Kind is a statement kind, as policy rules name them.
type Kind string

// The statement kinds. Every top-level statement has exactly one Kind;
// Statement.Kinds adds the kinds of everything nested in it that runs.
const (
	// KindSelect is SELECT, VALUES and TABLE.
	KindSelect Kind = "select"
	// KindInsert is INSERT.
	KindInsert Kind = "insert"
	// KindUpdate is UPDATE.
	KindUpdate Kind = "update"
	// KindDelete is DELETE.
	KindDelete Kind = "delete"
	// KindMerge is MERGE.
	KindMerge Kind = "merge"
	// KindCopyFrom is COPY ... FROM.
	KindCopyFrom Kind = "copy_from"
	// KindCopyTo is COPY ... TO.
	KindCopyTo Kind = "copy_to"
	// KindDDL is CREATE, ALTER, DROP, COMMENT, SECURITY LABEL, ALTER SYSTEM,
	// CREATE TABLE AS and SELECT ... INTO.
	KindDDL Kind = "ddl"
	// KindTruncate is TRUNCATE.
	KindTruncate Kind = "truncate"
	// KindCall is CALL.
	KindCall Kind = "call"
	// KindDo is DO; its body is not parsed.
	KindDo Kind = "do"
	// KindSet is SET, RESET, SET CONSTRAINTS and a set_config() call.
	KindSet Kind = "set"
	// KindShow is SHOW.
	KindShow Kind = "show"
	// KindTransaction is BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK,
	// ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION and COMMIT/ROLLBACK
	// PREPARED.
	KindTransaction Kind = "transaction"
	// KindExplain is EXPLAIN.
	KindExplain Kind = "explain"
	// KindPrepare is SQL-level PREPARE.
	KindPrepare Kind = "prepare"
	// KindExecute is EXECUTE.
	KindExecute Kind = "execute"
	// KindDeallocate is DEALLOCATE.
	KindDeallocate Kind = "deallocate"
	// KindListen is LISTEN.
	KindListen Kind = "listen"
	// KindUnlisten is UNLISTEN.
	KindUnlisten Kind = "unlisten"
	// KindNotify is NOTIFY and a pg_notify() call.
	KindNotify Kind = "notify"
	// KindDiscard is DISCARD.
	KindDiscard Kind = "discard"
	// KindLock is LOCK TABLE.
	KindLock Kind = "lock"
	// KindMaintenance is VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT and
	// REFRESH MATERIALIZED VIEW.
	KindMaintenance Kind = "maintenance"
	// KindDCL is GRANT, REVOKE, CREATE/ALTER/DROP ROLE, ALTER DEFAULT
	// PRIVILEGES and REASSIGN OWNED.
	KindDCL Kind = "dcl"
	// KindCursor is DECLARE, FETCH, MOVE and CLOSE.
	KindCursor Kind = "cursor"
	// KindOther is LOAD, and any statement this package does not know.
	KindOther Kind = "other"
)

// allKinds lists every Kind, sorted by name; a kindSet bit is an index into it.
var allKinds = func() []Kind {
	ks := []Kind{
		KindSelect, KindInsert, KindUpdate, KindDelete, KindMerge, KindCopyFrom, KindCopyTo,
		KindDDL, KindTruncate, KindCall, KindDo, KindSet, KindShow, KindTransaction,
		KindExplain, KindPrepare, KindExecute, KindDeallocate, KindListen, KindUnlisten,
		KindNotify, KindDiscard, KindLock, KindMaintenance, KindDCL, KindCursor, KindOther,
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}()

// kindBit maps a Kind to its bit in a kindSet.
var kindBit = func() map[Kind]kindSet {
	m := make(map[Kind]kindSet, len(allKinds))
	for i, k := range allKinds {
		m[k] = 1 << i
	}
	return m
}()

// kindSet is a set of kinds, one bit per entry of allKinds.
type kindSet uint32

// readOnlyKinds are the kinds that cannot write by themselves.
var readOnlyKinds = kindBit[KindSelect] | kindBit[KindShow] | kindBit[KindExplain] | kindBit[KindCopyTo] | kindBit[KindTransaction]

func (s *kindSet) add(k Kind) { *s |= kindBit[k] }

func (s kindSet) has(k Kind) bool { return s&kindBit[k] != 0 }

// list returns the kinds in s, sorted by name.
func (s kindSet) list() []Kind {
	out := make([]Kind, 0, 2)
	for i, k := range allKinds {
		if s&(1<<i) != 0 {
			out = append(out, k)
		}
	}
	return out
}
