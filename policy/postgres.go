package policy

import (
	"errors"
	"fmt"
	"slices"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
)

// readOnlyKinds are the statement kinds that do not write by themselves: a
// rule that lists no other kind is a read-only rule, and also refuses
// statements that classify does not find ReadOnly (nextval, setval,
// advisory locks, lo_* and other writing functions, SELECT ... FOR
// UPDATE/SHARE, COPY TO a server file or program, two-phase commit).
var readOnlyKinds = []classify.Kind{
	classify.KindSelect, classify.KindShow, classify.KindExplain, classify.KindCopyTo, classify.KindTransaction,
}

// pgRule is a compiled postgres section of a rule. A nil list field does
// not restrict.
type pgRule struct {
	kinds     []classify.Kind
	readOnly  bool
	tables    *objectSet
	functions *objectSet
	// failClosed refuses SQL the parser rejected: the rule restricts
	// something and on_parse_error is deny.
	failClosed bool
}

func compilePostgres(key string, c config.PostgresRule) (*pgRule, error) {
	var errs []error
	r := &pgRule{}
	for i, k := range c.Statements {
		kind := classify.Kind(k)
		if !slices.Contains(knownKinds, kind) {
			errs = append(errs, fmt.Errorf("%s.statements[%d]: unknown statement kind %q", key, i, k))
			continue
		}
		if !slices.Contains(r.kinds, kind) {
			r.kinds = append(r.kinds, kind)
		}
	}
	if len(r.kinds) > 0 {
		r.readOnly = true
		for _, k := range r.kinds {
			if !slices.Contains(readOnlyKinds, k) {
				r.readOnly = false
			}
		}
	}
	var err error
	if r.tables, err = compileObjects(c.Tables, true); err != nil {
		errs = append(errs, fmt.Errorf("%s.tables: %v", key, err))
	}
	if r.functions, err = compileObjects(c.Functions, false); err != nil {
		errs = append(errs, fmt.Errorf("%s.functions: %v", key, err))
	}
	restricts := r.kinds != nil || r.tables != nil || r.functions != nil
	r.failClosed = restricts && c.OnParseError != "allow"
	return r, errors.Join(errs...)
}

// check returns why the rule refuses res, or "" if it allows it. Every
// statement of the text must pass: each kind it performs anywhere (but
// transaction control, always allowed) is listed, each table and function
// it references matches the lists, and under a read-only rule it is
// ReadOnly. It does not allocate when it allows.
func (r *pgRule) check(res *classify.Result) string {
	if res == nil {
		return "the statement was not classified"
	}
	if res.Err != nil {
		if r.failClosed {
			return "SQL that the parser rejects is not allowed"
		}
		return ""
	}
	for i := range res.Statements {
		st := &res.Statements[i]
		if r.kinds != nil {
			for _, k := range st.Kinds {
				if k != classify.KindTransaction && !slices.Contains(r.kinds, k) {
					return fmt.Sprintf("statement kind %s is not allowed", k)
				}
			}
			if r.readOnly && !st.ReadOnly {
				return "the statement may write, and the rule allows only reading"
			}
		}
		if r.tables != nil {
			for _, t := range st.Tables {
				if !r.tables.allows(t) {
					return fmt.Sprintf("table %s is not allowed", t)
				}
			}
		}
		if r.functions != nil {
			for _, f := range st.Functions {
				if !r.functions.allows(f) {
					return fmt.Sprintf("function %s is not allowed", f)
				}
			}
		}
	}
	return ""
}

// transactionControl reports whether res is nothing but transaction control
// (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...), which every session may run:
// every statement is of kind transaction and ReadOnly, which leaves out the
// two-phase commit commands (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED).
func transactionControl(res *classify.Result) bool {
	if res == nil || res.Err != nil || len(res.Statements) == 0 {
		return false
	}
	for i := range res.Statements {
		st := &res.Statements[i]
		if st.Kind != classify.KindTransaction || !st.ReadOnly || len(st.Kinds) != 1 {
			return false
		}
	}
	return true
}

// knownKinds are the statement kinds a rule may list: every classify.Kind
// (a test keeps this list equal to classify's constants and to
// config.StatementKinds).
var knownKinds = []classify.Kind{
	classify.KindSelect, classify.KindInsert, classify.KindUpdate, classify.KindDelete,
	classify.KindMerge, classify.KindCopyFrom, classify.KindCopyTo, classify.KindDDL,
	classify.KindTruncate, classify.KindCall, classify.KindDo, classify.KindSet,
	classify.KindShow, classify.KindTransaction, classify.KindExplain, classify.KindPrepare,
	classify.KindExecute, classify.KindDeallocate, classify.KindListen, classify.KindUnlisten,
	classify.KindNotify, classify.KindDiscard, classify.KindLock, classify.KindMaintenance,
	classify.KindDCL, classify.KindCursor, classify.KindOther,
}
