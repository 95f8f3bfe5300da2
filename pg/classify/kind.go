package classify

import "sort"

// Kind is a statement kind, as policy rules name them.
type Kind string

// The statement kinds. Every top-level statement has exactly one Kind;
// Statement.Kinds adds the kinds of everything nested in it that runs.
const (
	KindSelect      Kind = "select"      // SELECT, VALUES, TABLE
	KindInsert      Kind = "insert"      // INSERT
	KindUpdate      Kind = "update"      // UPDATE
	KindDelete      Kind = "delete"      // DELETE
	KindMerge       Kind = "merge"       // MERGE
	KindCopyFrom    Kind = "copy_from"   // COPY ... FROM
	KindCopyTo      Kind = "copy_to"     // COPY ... TO
	KindDDL         Kind = "ddl"         // CREATE, ALTER, DROP, COMMENT, SELECT INTO, CREATE TABLE AS, ALTER SYSTEM ...
	KindTruncate    Kind = "truncate"    // TRUNCATE
	KindCall        Kind = "call"        // CALL
	KindDo          Kind = "do"          // DO (its body is not parsed)
	KindSet         Kind = "set"         // SET, RESET, SET CONSTRAINTS, set_config()
	KindShow        Kind = "show"        // SHOW
	KindTransaction Kind = "transaction" // BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED
	KindExplain     Kind = "explain"     // EXPLAIN
	KindPrepare     Kind = "prepare"     // PREPARE
	KindExecute     Kind = "execute"     // EXECUTE
	KindDeallocate  Kind = "deallocate"  // DEALLOCATE
	KindListen      Kind = "listen"      // LISTEN
	KindUnlisten    Kind = "unlisten"    // UNLISTEN
	KindNotify      Kind = "notify"      // NOTIFY, pg_notify()
	KindDiscard     Kind = "discard"     // DISCARD
	KindLock        Kind = "lock"        // LOCK TABLE
	KindMaintenance Kind = "maintenance" // VACUUM ANALYZE CLUSTER REINDEX CHECKPOINT, REFRESH MATERIALIZED VIEW
	KindDCL         Kind = "dcl"         // GRANT REVOKE, CREATE/ALTER/DROP ROLE, ALTER DEFAULT PRIVILEGES, REASSIGN OWNED
	KindCursor      Kind = "cursor"      // DECLARE FETCH MOVE CLOSE
	KindOther       Kind = "other"       // LOAD, and any statement this package does not know
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
