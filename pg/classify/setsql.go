package classify

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// setStmt records the effect of a top-level SET or RESET.
func (w *walker) setStmt(n *pg.VariableSetStmt) {
	w.addKind(KindSet)
	if n.IsLocal {
		return // SET LOCAL ends with the transaction
	}
	name := asciiLower(n.Name)
	switch n.Kind {
	case pg.VariableSetKind_VAR_SET_VALUE:
		switch {
		case isRoleParam(name):
			w.pin(PinSetRole)
		case isTxParam(name):
		default:
			if sql, ok := renderSet(n, w.version); ok {
				w.effects = append(w.effects, Effect{Kind: EffectSet, Name: name, SQL: sql})
			} else {
				w.pin(PinDynamicSet)
			}
		}
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
		switch {
		case isRoleParam(name):
			w.pin(PinSetRole)
		case isTxParam(name):
		default:
			if sql, ok := renderReset(n.Name); ok {
				w.effects = append(w.effects, Effect{Kind: EffectReset, Name: name, SQL: sql})
			} else {
				w.pin(PinDynamicSet)
			}
		}
	case pg.VariableSetKind_VAR_RESET_ALL:
		w.effects = append(w.effects, Effect{Kind: EffectResetAll, SQL: "RESET ALL"})
	case pg.VariableSetKind_VAR_SET_MULTI:
		switch n.Name {
		case "TRANSACTION", "TRANSACTION SNAPSHOT":
			// SET TRANSACTION: this transaction only.
		case "SESSION CHARACTERISTICS":
			w.sessionCharacteristics(n)
		default:
			w.pin(PinDynamicSet)
		}
	default: // VAR_SET_CURRENT (SET x FROM CURRENT) and anything new
		w.pin(PinDynamicSet)
	}
}

// sessionCharacteristics turns SET SESSION CHARACTERISTICS AS TRANSACTION
// into the equivalent SETs of the default_transaction_* parameters, as
// Postgres itself executes it.
func (w *walker) sessionCharacteristics(n *pg.VariableSetStmt) {
	for _, a := range n.Args {
		de := a.GetDefElem()
		var param, value string
		switch de.GetDefname() {
		case "transaction_isolation":
			param = "default_transaction_isolation"
			if c := de.GetArg().GetAConst(); c != nil && c.GetSval() != nil {
				value = c.GetSval().Sval
			}
		case "transaction_read_only", "transaction_deferrable":
			param = "default_" + de.GetDefname()
			if c := de.GetArg().GetAConst(); c != nil && c.GetIval() != nil {
				value = "off"
				if c.GetIval().Ival != 0 {
					value = "on"
				}
			}
		}
		if param == "" || value == "" {
			w.pin(PinDynamicSet)
			continue
		}
		set := &pg.VariableSetStmt{
			Kind: pg.VariableSetKind_VAR_SET_VALUE,
			Name: param,
			Args: []*pg.Node{pg.MakeAConstStrNode(value, -1)},
		}
		if sql, ok := renderSet(set, w.version); ok {
			w.effects = append(w.effects, Effect{Kind: EffectSet, Name: param, SQL: sql})
		} else {
			w.pin(PinDynamicSet)
		}
	}
}

// setConfig records the effect of a set_config(name, value, is_local) call
// that runs (outside a plain EXPLAIN or a definition).
func (w *walker) setConfig(n *pg.FuncCall, schema string) {
	if schema != "" && schema != "pg_catalog" {
		w.pin(PinDynamicSet) // not the built-in, or not only
		return
	}
	if len(n.Args) != 3 || n.FuncVariadic || n.AggStar || n.AggDistinct || n.AggWithinGroup ||
		len(n.AggOrder) != 0 || n.AggFilter != nil || n.Over != nil {
		w.pin(PinDynamicSet)
		return
	}
	local, ok := constBool(n.Args[2])
	if !ok {
		w.pin(PinDynamicSet)
		return
	}
	if local {
		return // transaction-local, like SET LOCAL
	}
	param, null, ok := constText(n.Args[0])
	if !ok || null {
		w.pin(PinDynamicSet)
		return
	}
	value, null, ok := constText(n.Args[1])
	name := asciiLower(param)
	switch {
	case isRoleParam(name):
		w.pin(PinSetRole)
		return
	case !ok || !slicesContains(w.definite, n):
		w.pin(PinDynamicSet)
		return
	case isTxParam(name):
		return
	}
	valueSQL := "NULL"
	kind := EffectSet
	if null {
		kind = EffectReset // set_config(name, NULL, false) resets name
	} else {
		valueSQL = quoteLiteral(value)
	}
	w.effects = append(w.effects, Effect{
		Kind: kind,
		Name: name,
		SQL:  "SELECT pg_catalog.set_config(" + quoteLiteral(param) + ", " + valueSQL + ", false)",
	})
}

func slicesContains(s []*pg.FuncCall, f *pg.FuncCall) bool {
	for _, x := range s {
		if x == f {
			return true
		}
	}
	return false
}

// isRoleParam reports whether a parameter changes the session's role.
func isRoleParam(name string) bool {
	return name == "role" || name == "session_authorization"
}

// isTxParam reports whether a parameter only applies to the current
// transaction (Postgres resets it at every transaction start).
func isTxParam(name string) bool {
	switch name {
	case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
		return true
	}
	return false
}

// constBool reads a boolean constant argument: true/false, a string that
// boolin accepts, or either cast to boolean.
func constBool(n *pg.Node) (val, ok bool) {
	if tc := n.GetTypeCast(); tc != nil {
		if !isTypeName(tc.GetTypeName(), "bool", "boolean") {
			return false, false
		}
		if c := tc.GetArg().GetAConst(); c != nil && c.GetIval() != nil {
			return c.GetIval().Ival != 0, true
		}
		n = tc.GetArg()
	}
	c := n.GetAConst()
	switch {
	case c == nil:
		return false, false
	case c.Isnull:
		return false, true // set_config treats a NULL is_local as false
	case c.GetBoolval() != nil:
		return c.GetBoolval().Boolval, true
	case c.GetSval() != nil:
		return parseBool(c.GetSval().Sval)
	}
	return false, false
}

// parseBool parses a boolean as Postgres' boolin does: surrounding
// whitespace, and any unambiguous prefix of true/false/yes/no/on/off, or 1/0.
func parseBool(s string) (val, ok bool) {
	s = asciiLower(strings.Trim(s, " \t\n\r\f\v"))
	if s == "" {
		return false, false
	}
	prefixOf := func(word string, min int) bool { return len(s) >= min && strings.HasPrefix(word, s) }
	switch {
	case prefixOf("true", 1), prefixOf("yes", 1), prefixOf("on", 2), s == "1":
		return true, true
	case prefixOf("false", 1), prefixOf("no", 1), prefixOf("off", 2), s == "0":
		return false, true
	}
	return false, false
}

// constText reads a text constant argument: a string literal or NULL,
// possibly cast to text or varchar.
func constText(n *pg.Node) (val string, null, ok bool) {
	if tc := n.GetTypeCast(); tc != nil {
		if !isTypeName(tc.GetTypeName(), "text", "varchar") || len(tc.GetTypeName().GetTypmods()) != 0 {
			return "", false, false
		}
		n = tc.GetArg()
	}
	c := n.GetAConst()
	switch {
	case c == nil:
		return "", false, false
	case c.Isnull:
		return "", true, true
	case c.GetSval() != nil:
		return c.GetSval().Sval, false, true
	}
	return "", false, false
}

// isTypeName reports whether t names one of the given built-in types,
// unqualified or in pg_catalog, and is not an array type.
func isTypeName(t *pg.TypeName, names ...string) bool {
	if t == nil || len(t.ArrayBounds) != 0 || t.Setof {
		return false
	}
	schema, name := splitFuncName(t.Names)
	if schema != "" && schema != "pg_catalog" {
		return false
	}
	for _, want := range names {
		if name == want {
			return true
		}
	}
	return false
}

// renderSet renders a session-level SET as one statement. The result is
// parsed back and must give the same statement; if no rendering does, ok is
// false.
func renderSet(n *pg.VariableSetStmt, version int32) (sql string, ok bool) {
	var args strings.Builder
	plain := true
	for i, a := range n.Args {
		if i > 0 {
			args.WriteString(", ")
		}
		lit, ok := setArg(a)
		if !ok {
			plain = false
			break
		}
		args.WriteString(lit)
	}
	if plain {
		for _, name := range []string{varName(n.Name), quoteIdent(n.Name)} {
			sql = "SET " + name + " TO " + args.String()
			if sameSet(sql, n) {
				return sql, true
			}
		}
	}
	// Other argument forms (SET TIME ZONE INTERVAL ...): the deparser, which
	// needs the parse tree's version.
	sql, err := pg.Deparse(&pg.ParseResult{Version: version, Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_VariableSetStmt{VariableSetStmt: n}}}}})
	if err == nil && sameSet(sql, n) {
		return sql, true
	}
	return "", false
}

// renderReset renders RESET name, checked like renderSet.
func renderReset(name string) (sql string, ok bool) {
	want := &pg.VariableSetStmt{Kind: pg.VariableSetKind_VAR_RESET, Name: name}
	for _, n := range []string{varName(name), quoteIdent(name)} {
		sql = "RESET " + n
		if sameSet(sql, want) {
			return sql, true
		}
	}
	return "", false
}

// setArg renders one constant SET argument.
func setArg(n *pg.Node) (string, bool) {
	c := n.GetAConst()
	switch {
	case c == nil || c.Isnull:
		return "", false
	case c.GetSval() != nil:
		return quoteLiteral(c.GetSval().Sval), true
	case c.GetIval() != nil:
		return strconv.FormatInt(int64(c.GetIval().Ival), 10), true
	case c.GetFval() != nil:
		return c.GetFval().Fval, true
	case c.GetBoolval() != nil:
		return strconv.FormatBool(c.GetBoolval().Boolval), true
	}
	return "", false
}

// sameSet reports whether sql parses to exactly the statement want,
// locations aside.
func sameSet(sql string, want *pg.VariableSetStmt) bool {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.GetStmts()) != 1 {
		return false
	}
	got := tree.GetStmts()[0].GetStmt().GetVariableSetStmt()
	if got == nil {
		return false
	}
	w := proto.Clone(want)
	clearLocations(got.ProtoReflect())
	clearLocations(w.ProtoReflect())
	return proto.Equal(got, w)
}

// clearLocations zeroes every "location" field in m and its descendants.
func clearLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "location" && fd.Kind() == protoreflect.Int32Kind:
			m.Clear(fd)
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			clearLocations(v.Message())
		}
		return true
	})
}

// varName writes a parameter name for SET: each dot-separated part bare when
// it is a plain lower-case identifier, else double-quoted.
func varName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if !plainIdent(p) {
			parts[i] = quoteIdent(p)
		}
	}
	return strings.Join(parts, ".")
}

func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || c == '_' || i > 0 && ('0' <= c && c <= '9' || c == '$')) {
			return false
		}
	}
	return true
}

// quoteIdent double-quotes an identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral writes a string literal that means s whatever
// standard_conforming_strings is: with a backslash in s, an E” literal.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, `'`, `''`)
	if strings.Contains(s, `\`) {
		return `E'` + strings.ReplaceAll(s, `\`, `\\`) + `'`
	}
	return `'` + s + `'`
}
