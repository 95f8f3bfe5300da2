package classify

import (
	"errors"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// ErrZeroByte is Result.Err for SQL text that contains a zero byte. Postgres
// ends query strings at the first zero byte, so such text cannot come from
// the wire protocol, and classifying a prefix of it would not be fail-closed.
var ErrZeroByte = errors.New("classify: query text contains a zero byte")

// InternalError is Result.Err when classification itself failed after a
// successful parse (a bug in this package). The statement must be treated as
// unknown: fail closed.
type InternalError struct {
	Panic any // the recovered value
}

// Error describes the failure.
func (e *InternalError) Error() string {
	return fmt.Sprintf("classify: internal error: %v", e.Panic)
}

// Result is the classification of one SQL text.
type Result struct {
	Statements []Statement // one per top-level statement, in order
	Err        error       // the parser's error (*parser.Error from pg_query_go), ErrZeroByte or *InternalError; Statements is empty then
}

// Statement is the classification of one top-level statement.
type Statement struct {
	// Kind is the top-level kind. SELECT ... INTO is KindDDL (it is CREATE
	// TABLE AS); a statement this package does not know is KindOther.
	Kind Kind
	// Kinds is every kind the statement performs anywhere, sorted by name,
	// without repeats, Kind included: data-modifying CTEs, subqueries
	// (reading inside a write adds select; a bare VALUES list does not),
	// EXPLAIN ANALYZE's statement, CREATE TABLE AS and SELECT INTO (ddl+select),
	// COPY (query) TO (copy_to+select), DECLARE's and PREPARE's query,
	// set_config (set) and pg_notify (notify) calls. Bodies that are only
	// defined here and not run (plain EXPLAIN's statement, view and rule
	// definitions, SQL function bodies) add names but no kinds.
	Kinds []Kind
	// Tables is every relation referenced anywhere: FROM, JOIN, subqueries,
	// CTE bodies (but not references to the CTEs themselves), DML targets,
	// COPY, DDL targets (DROP TABLE names included), views and rules named,
	// INTO targets. A name is "schema.name" when qualified (catalog.schema.name
	// with a catalog), else "name", as Postgres folds it: lower case unless
	// quoted. A part that contains '.' or '"' is written double-quoted, with
	// '"' doubled. Sorted, without repeats.
	Tables []string
	// Functions is every function called anywhere (FuncCall nodes, CALL
	// targets, functions in FROM, including the pg_catalog functions that
	// SQL syntax such as EXTRACT or AT TIME ZONE stands for), named like
	// Tables. Sorted, without repeats.
	Functions []string
	// ReadOnly is true when Kinds ⊆ {select, show, explain, copy_to,
	// transaction} and nothing that runs can write: no call of a known
	// writing function (set_config, nextval, setval, pg_advisory*, lo_*,
	// txid_current ...), no FOR UPDATE/SHARE, no COPY TO a server file or
	// program, no two-phase commit command. Functions this package does not
	// know (user-defined ones) are assumed not to write.
	ReadOnly bool
	// Effects are the session-state effects, in the order they happen.
	Effects []Effect
	// TxBegin is true for BEGIN and START TRANSACTION (and COMMIT/ROLLBACK
	// AND CHAIN, which begin a new transaction).
	TxBegin bool
	// TxEnd is true for COMMIT, END, ROLLBACK, ABORT and PREPARE TRANSACTION
	// (not savepoint commands, not ROLLBACK TO, not COMMIT/ROLLBACK PREPARED).
	TxEnd bool
	// Prepares is the name a top-level PREPARE gives its statement, ""
	// for any other statement. The statement's Kinds, Tables and Functions
	// include those of the query it prepares.
	Prepares string
	// Deallocates is the name a top-level DEALLOCATE [PREPARE] name frees,
	// "" for any other statement (DEALLOCATE ALL has an
	// EffectDeallocateAll instead).
	Deallocates string
	// Executes are the names of the SQL-level prepared statements the
	// statement runs: EXECUTE's, also under EXPLAIN ANALYZE and in CREATE
	// TABLE AS ... EXECUTE. What they run is known only from their PREPARE,
	// so a policy checks that too.
	Executes []string
}

// Classify parses sql with the Postgres parser and classifies each statement
// in it. It does not cache; see Cache. It never panics.
func Classify(sql string) *Result {
	if strings.IndexByte(sql, 0) >= 0 {
		return &Result{Err: ErrZeroByte}
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		return &Result{Err: err}
	}
	return classifyTree(tree)
}

// classifyTree classifies a parsed text. A panic in the walker (a bug)
// becomes an *InternalError.
func classifyTree(tree *pg.ParseResult) (res *Result) {
	defer func() {
		if p := recover(); p != nil {
			res = &Result{Err: &InternalError{Panic: p}}
		}
	}()
	res = &Result{Statements: make([]Statement, 0, len(tree.GetStmts()))}
	for _, raw := range tree.GetStmts() {
		res.Statements = append(res.Statements, classifyStmt(raw.GetStmt(), tree.GetVersion()))
	}
	return res
}
