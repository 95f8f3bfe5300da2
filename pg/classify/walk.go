package classify

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// cursorOptHold is CURSOR_OPT_HOLD from Postgres' parsenodes.h.
const cursorOptHold = 0x0020

// walker classifies one top-level statement. It visits every message of the
// parse tree: visit handles the node types that matter and hands every other
// one to the generated children (walk_gen.go), which visits each
// message-typed field. Nothing in it indexes a slice or dereferences a
// pointer that the parse tree may leave nil.
type walker struct {
	top     any   // the top-level statement message
	version int32 // the parse tree's Postgres version, for the deparser
	kinds   kindSet
	tables  []string
	funcs   []string
	effects []Effect
	writes  bool // something that runs can write beyond what kinds say

	// defOnly > 0 inside a body that is only defined, not run: a plain
	// EXPLAIN's statement, a view or rule definition, a CREATE FUNCTION.
	// Such bodies add tables and functions but no kinds and no effects.
	defOnly int
	// ctes holds the names of the CTEs in scope, innermost last.
	ctes []string
	// fromPos is set just before visiting a RangeVar that stands in a FROM
	// position, where an unqualified name may be a CTE.
	fromPos bool
	// exempt is the target of CREATE TEMP TABLE ... ON COMMIT DROP (or of
	// SELECT INTO / CREATE TABLE AS with ON COMMIT DROP), which is no
	// session state.
	exempt *pg.RangeVar
	// tempRef is set when a temporary relation or a pg_temp schema is named.
	tempRef bool
	// definite holds the set_config calls that are sure to run exactly once.
	definite []*pg.FuncCall

	txBegin, txEnd bool
	prepares       string
	deallocates    string
	executes       []string

	// trace, in tests, sees every visited message.
	trace func(any)
}

// classifyStmt classifies one top-level statement.
func classifyStmt(n *pg.Node, version int32) Statement {
	w := walker{top: unwrapNode(n), version: version}
	kind := topKind(w.top)
	w.kinds.add(kind)
	w.node(n)
	if w.tempRef && w.kinds.has(KindDDL) {
		w.pin(PinTempTable)
	}
	return Statement{
		Kind:        kind,
		Kinds:       w.kinds.list(),
		Tables:      sortedUnique(w.tables),
		Functions:   sortedUnique(w.funcs),
		ReadOnly:    w.kinds&^readOnlyKinds == 0 && !w.writes,
		Effects:     w.effects,
		TxBegin:     w.txBegin,
		TxEnd:       w.txEnd,
		Prepares:    w.prepares,
		Deallocates: w.deallocates,
		Executes:    w.executes,
	}
}

// topKind is the Kind of a top-level statement.
func topKind(m any) Kind {
	if s, ok := m.(*pg.SelectStmt); ok && s.IntoClause != nil {
		return KindDDL
	}
	if k, ok := stmtKind(m); ok {
		return k
	}
	return KindOther
}

func (w *walker) nodes(ns []*pg.Node) {
	for _, n := range ns {
		w.node(n)
	}
}

// addKind records a kind the statement performs, unless inside a body that
// is only defined.
func (w *walker) addKind(k Kind) {
	if w.defOnly == 0 {
		w.kinds.add(k)
	}
}

// pin records an EffectPin for reason, once per statement.
func (w *walker) pin(reason PinReason) {
	for _, e := range w.effects {
		if e.Kind == EffectPin && e.Reason == reason {
			return
		}
	}
	w.effects = append(w.effects, Effect{Kind: EffectPin, Reason: reason})
}

// visit handles one message of the tree and walks into its children.
func (w *walker) visit(m any) {
	if w.trace != nil {
		w.trace(m)
	}
	switch n := m.(type) {
	case *pg.RangeVar:
		from := w.fromPos
		w.fromPos = false
		w.rangeVar(n, from)
		w.children(n)
	case *pg.String:
		if isTempSchema(n.Sval) {
			w.tempRef = true
		}
	case *pg.FuncCall:
		w.funcCall(n)
		w.children(n)

	case *pg.SelectStmt:
		w.selectStmt(n)
	case *pg.InsertStmt:
		w.addKind(KindInsert)
		mark := w.with(n.WithClause)
		w.restInsertStmt(n)
		w.ctes = w.ctes[:mark]
	case *pg.UpdateStmt:
		w.addKind(KindUpdate)
		mark := w.with(n.WithClause)
		for _, f := range n.FromClause {
			w.fromItem(f)
		}
		w.restUpdateStmt(n)
		w.ctes = w.ctes[:mark]
	case *pg.DeleteStmt:
		w.addKind(KindDelete)
		mark := w.with(n.WithClause)
		for _, f := range n.UsingClause {
			w.fromItem(f)
		}
		w.restDeleteStmt(n)
		w.ctes = w.ctes[:mark]
	case *pg.MergeStmt:
		w.addKind(KindMerge)
		mark := w.with(n.WithClause)
		w.fromItem(n.SourceRelation)
		w.restMergeStmt(n)
		w.ctes = w.ctes[:mark]
	case *pg.JoinExpr:
		// A JoinExpr only stands in FROM, so its arms are FROM items too.
		w.fromItem(n.Larg)
		w.fromItem(n.Rarg)
		w.restJoinExpr(n)
	case *pg.RangeTableSample:
		w.fromItem(n.Relation)
		w.restRangeTableSample(n)
	case *pg.LockingClause:
		if w.defOnly == 0 {
			w.writes = true // SELECT ... FOR UPDATE/SHARE locks rows
		}
		w.children(n)

	case *pg.CopyStmt:
		if n.IsFrom {
			w.addKind(KindCopyFrom)
		} else {
			w.addKind(KindCopyTo)
			if (n.Filename != "" || n.IsProgram) && w.defOnly == 0 {
				w.writes = true // a server file or program
			}
		}
		w.children(n)
	case *pg.ExplainStmt:
		w.addKind(KindExplain)
		w.restExplainStmt(n)
		if explainAnalyze(n.Options) {
			w.node(n.Query)
		} else {
			w.defOnly++
			w.node(n.Query)
			w.defOnly--
		}
	case *pg.ViewStmt, *pg.RuleStmt, *pg.CreateFunctionStmt:
		w.addKind(KindDDL)
		w.defOnly++
		w.children(n)
		w.defOnly--
	case *pg.CreateStmt:
		w.addKind(KindDDL)
		if n.Oncommit == pg.OnCommitAction_ONCOMMIT_DROP {
			w.exempt = n.Relation
		}
		if n.Relation != nil {
			w.visit(n.Relation)
		}
		w.exempt = nil
		w.restCreateStmt(n)
	case *pg.IntoClause:
		w.addKind(KindDDL) // SELECT INTO, CREATE TABLE AS
		if n.OnCommit == pg.OnCommitAction_ONCOMMIT_DROP {
			w.exempt = n.Rel
		}
		if n.Rel != nil {
			w.visit(n.Rel)
		}
		w.exempt = nil
		w.restIntoClause(n)
	case *pg.DropStmt:
		w.addKind(KindDDL)
		for _, o := range n.Objects {
			w.objectTable(n.RemoveType, o)
		}
		w.children(n)
	case *pg.CommentStmt:
		w.addKind(KindDDL)
		w.objectTable(n.Objtype, n.Object)
		w.children(n)
	case *pg.ImportForeignSchemaStmt:
		w.addKind(KindDDL)
		if isTempSchema(n.LocalSchema) {
			w.tempRef = true
		}
		w.children(n)
	case *pg.SecLabelStmt:
		w.addKind(KindDDL)
		w.objectTable(n.Objtype, n.Object)
		w.children(n)

	case *pg.VariableSetStmt:
		// A VariableSetStmt is a statement only at the top; nested in
		// CREATE FUNCTION ... SET, ALTER ROLE/DATABASE ... SET or ALTER
		// SYSTEM it is part of a definition.
		if m == w.top {
			w.setStmt(n)
		}
		w.children(n)
	case *pg.TransactionStmt:
		w.addKind(KindTransaction)
		if m == w.top {
			w.transactionStmt(n)
		}
		w.children(n)
	case *pg.DeclareCursorStmt:
		w.addKind(KindCursor)
		if m == w.top && n.Options&cursorOptHold != 0 {
			w.pin(PinHoldCursor)
		}
		w.children(n)
	case *pg.PrepareStmt:
		w.addKind(KindPrepare)
		if m == w.top {
			w.pin(PinPrepare)
			w.prepares = n.Name
		}
		w.children(n)
	case *pg.ExecuteStmt:
		if w.defOnly == 0 {
			w.addKind(KindExecute)
			w.executes = append(w.executes, n.Name)
		}
		w.children(n)
	case *pg.DiscardStmt:
		w.addKind(KindDiscard)
		if m == w.top && n.Target == pg.DiscardMode_DISCARD_ALL {
			w.effects = append(w.effects, Effect{Kind: EffectDiscardAll, SQL: "DISCARD ALL"})
		}
		w.children(n)
	case *pg.DeallocateStmt:
		w.addKind(KindDeallocate)
		if m == w.top && n.Isall {
			w.effects = append(w.effects, Effect{Kind: EffectDeallocateAll, SQL: "DEALLOCATE ALL"})
		} else if m == w.top {
			w.deallocates = n.Name
		}
		w.children(n)
	case *pg.ListenStmt:
		w.addKind(KindListen)
		if m == w.top {
			w.pin(PinListen)
		}
		w.children(n)
	case *pg.LoadStmt:
		w.addKind(KindOther)
		if m == w.top {
			w.pin(PinLoad)
		}
		w.children(n)
	case *pg.DoStmt:
		w.addKind(KindDo)
		if m == w.top && doMayAffectSession(n) {
			w.pin(PinDoBlock)
		}
		w.children(n)

	default:
		if k, ok := stmtKind(m); ok {
			w.addKind(k)
		}
		w.children(m)
	}
}

// selectStmt handles SELECT, VALUES and TABLE, and set operations over them.
func (w *walker) selectStmt(n *pg.SelectStmt) {
	// A bare VALUES list reads nothing; it counts as a select only as the
	// top-level statement.
	if len(n.ValuesLists) == 0 || n == w.top {
		w.addKind(KindSelect)
	}
	if n == w.top && plainSelect(n) {
		for _, t := range n.TargetList {
			if fc := t.GetResTarget().GetVal().GetFuncCall(); fc != nil {
				w.definite = append(w.definite, fc)
			}
		}
	}
	mark := w.with(n.WithClause)
	for _, f := range n.FromClause {
		w.fromItem(f)
	}
	w.restSelectStmt(n)
	w.ctes = w.ctes[:mark]
}

// plainSelect reports whether n is SELECT <targets> and nothing else, so
// that each target is computed exactly once.
func plainSelect(n *pg.SelectStmt) bool {
	return n.Op == pg.SetOperation_SETOP_NONE && n.Larg == nil && n.Rarg == nil &&
		len(n.FromClause) == 0 && n.WhereClause == nil && len(n.GroupClause) == 0 && !n.GroupDistinct &&
		n.HavingClause == nil && len(n.WindowClause) == 0 && len(n.ValuesLists) == 0 &&
		len(n.SortClause) == 0 && n.LimitCount == nil && n.LimitOffset == nil &&
		len(n.LockingClause) == 0 && n.WithClause == nil && n.IntoClause == nil && len(n.DistinctClause) == 0
}

// with brings the CTEs of wc into scope, walking each CTE body with the
// names it can see: in a plain WITH the earlier CTEs, in WITH RECURSIVE all
// of them. It returns the scope mark to restore once the statement that owns
// wc has been walked.
func (w *walker) with(wc *pg.WithClause) (mark int) {
	mark = len(w.ctes)
	if wc == nil {
		return mark
	}
	if w.trace != nil {
		w.trace(wc)
	}
	if wc.Recursive {
		for _, c := range wc.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				w.ctes = append(w.ctes, cte.Ctename)
			}
		}
	}
	for _, c := range wc.Ctes {
		w.node(c)
		if cte := c.GetCommonTableExpr(); cte != nil && !wc.Recursive {
			w.ctes = append(w.ctes, cte.Ctename)
		}
	}
	return mark
}

// fromItem walks one item of a FROM (or USING) list.
func (w *walker) fromItem(n *pg.Node) {
	if n.GetRangeVar() != nil {
		w.fromPos = true
	}
	w.node(n)
	w.fromPos = false
}

// rangeVar records a relation reference; from says it stands in FROM, where
// an unqualified name may refer to a CTE in scope instead of a relation.
func (w *walker) rangeVar(n *pg.RangeVar, from bool) {
	if n != w.exempt && (n.Relpersistence == "t" || isTempSchema(n.Schemaname) || isTempSchema(n.Catalogname)) {
		w.tempRef = true
	}
	if from && n.Schemaname == "" && n.Catalogname == "" && slices.Contains(w.ctes, n.Relname) {
		return
	}
	w.tables = append(w.tables, qualify(n.Catalogname, n.Schemaname, n.Relname))
}

// objectTable records the relation that a DROP, COMMENT ON or SECURITY LABEL
// object names, where the object is a relation or belongs to one.
func (w *walker) objectTable(t pg.ObjectType, obj *pg.Node) {
	parts := obj.GetList().GetItems()
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_FOREIGN_TABLE:
	case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE,
		pg.ObjectType_OBJECT_POLICY, pg.ObjectType_OBJECT_TABCONSTRAINT:
		if len(parts) < 2 {
			return
		}
		parts = parts[:len(parts)-1]
	default:
		return
	}
	if name := qualifyList(parts); name != "" {
		w.tables = append(w.tables, name)
	}
}

// funcCall records a function call and what running it does.
func (w *walker) funcCall(n *pg.FuncCall) {
	name := qualifyList(n.Funcname)
	if name == "" {
		return
	}
	w.funcs = append(w.funcs, name)
	if w.defOnly > 0 {
		return
	}
	schema, fn := splitFuncName(n.Funcname)
	switch fn {
	case "set_config":
		w.addKind(KindSet)
		w.setConfig(n, schema)
	case "pg_notify":
		w.addKind(KindNotify)
	}
	if isSessionAdvisoryLock(fn) {
		w.pin(PinAdvisoryLock)
	}
	if isWritingFunc(fn) {
		w.writes = true
	}
}

// transactionStmt sets TxBegin and TxEnd.
func (w *walker) transactionStmt(n *pg.TransactionStmt) {
	switch n.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		w.txBegin = true
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		w.txEnd = true
		w.txBegin = n.Chain
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		w.txEnd = true
		w.writes = true
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		w.writes = true
	}
}

// explainAnalyze reports whether EXPLAIN options run the statement. An
// ANALYZE option whose value it cannot read counts as true.
func explainAnalyze(opts []*pg.Node) bool {
	for _, o := range opts {
		de := o.GetDefElem()
		if de == nil || asciiLower(de.Defname) != "analyze" {
			continue
		}
		if de.Arg == nil {
			return true
		}
		if b, ok := defBool(de.Arg); !ok || b {
			return true
		}
	}
	return false
}

// defBool reads an option value as Postgres' defGetBoolean does.
func defBool(n *pg.Node) (val, ok bool) {
	switch {
	case n.GetBoolean() != nil:
		return n.GetBoolean().Boolval, true
	case n.GetInteger() != nil:
		switch n.GetInteger().Ival {
		case 0:
			return false, true
		case 1:
			return true, true
		}
	case n.GetString_() != nil:
		switch asciiLower(n.GetString_().Sval) {
		case "true", "on":
			return true, true
		case "false", "off":
			return false, true
		}
	}
	return false, false
}

// doMayAffectSession reports whether a DO block's body mentions anything that
// could change session state. The body is not parsed, so this is a loose,
// fail-closed word search.
func doMayAffectSession(n *pg.DoStmt) bool {
	found := false
	for _, a := range n.Args {
		de := a.GetDefElem()
		if de == nil || de.Defname != "as" {
			continue
		}
		found = true
		body := de.Arg.GetString_().GetSval()
		for _, word := range doWords {
			if containsFold(body, word) {
				return true
			}
		}
	}
	return !found
}

var doWords = []string{
	"set", "listen", "prepare", "hold", "temp", "load", "advisory", "discard", "deallocate",
	"execute", "role", "authorization", "u&",
}

// isTempSchema reports whether a schema name is (or may be) the session's
// temporary schema: pg_temp or pg_temp_N, compared loosely.
func isTempSchema(s string) bool {
	return len(s) >= 7 && strings.EqualFold(s[:7], "pg_temp")
}

// isSessionAdvisoryLock reports whether fn takes a session-level advisory lock.
func isSessionAdvisoryLock(fn string) bool {
	switch fn {
	case "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared":
		return true
	}
	return false
}

// isWritingFunc reports whether fn is a known function that writes or
// changes server state, which makes a statement not read-only.
func isWritingFunc(fn string) bool {
	switch fn {
	case "set_config", "nextval", "setval", "lowrite", "txid_current", "pg_current_xact_id", "pg_notify",
		"pg_switch_wal", "pg_create_restore_point", "pg_reload_conf", "pg_rotate_logfile",
		"pg_terminate_backend", "pg_cancel_backend", "pg_promote", "pg_import_system_collations",
		"pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
		"pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
		"pg_log_backend_memory_contexts", "pg_wal_replay_pause", "pg_wal_replay_resume",
		"pg_backup_start", "pg_backup_stop":
		return true
	}
	for _, p := range []string{"pg_advisory", "pg_try_advisory", "lo_", "dblink", "pg_stat_reset", "pg_replication_origin", "pg_logical_slot_get", "pg_file_"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// splitFuncName returns the schema (empty if none) and the name of a
// function from its FuncCall name list.
func splitFuncName(parts []*pg.Node) (schema, name string) {
	if len(parts) == 0 {
		return "", ""
	}
	name = parts[len(parts)-1].GetString_().GetSval()
	if len(parts) >= 2 {
		schema = parts[len(parts)-2].GetString_().GetSval()
	}
	return schema, name
}

// qualifyList names an object from a list of String nodes.
func qualifyList(parts []*pg.Node) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		s := p.GetString_().GetSval()
		if p.GetAStar() != nil {
			s = "*"
		}
		writeNamePart(&b, s)
	}
	return b.String()
}

// qualify names a relation: catalog.schema.name, leaving out empty parts.
func qualify(catalog, schema, name string) string {
	var b strings.Builder
	for _, s := range []string{catalog, schema} {
		if s != "" {
			writeNamePart(&b, s)
			b.WriteByte('.')
		}
	}
	writeNamePart(&b, name)
	return b.String()
}

// writeNamePart writes one part of a dotted name, double-quoted when it
// contains '.' or '"' so that the dotted name stays unambiguous.
func writeNamePart(b *strings.Builder, s string) {
	if !strings.ContainsAny(s, `."`) {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	b.WriteString(strings.ReplaceAll(s, `"`, `""`))
	b.WriteByte('"')
}

// sortedUnique sorts ss and removes repeats.
func sortedUnique(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	slices.Sort(ss)
	return slices.Compact(ss)
}

// asciiLower lower-cases ASCII letters only, as Postgres folds identifiers
// and parameter names.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// containsFold reports whether s contains word, ignoring ASCII case.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if hasPrefixFold(s[i:], word) {
			return true
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with the lower-case ASCII word,
// ignoring ASCII case.
func hasPrefixFold(s, word string) bool {
	if len(s) < len(word) {
		return false
	}
	for i := 0; i < len(word); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != word[i] {
			return false
		}
	}
	return true
}
