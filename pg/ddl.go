package pg

import (
	"bytes"

	"github.com/outrigger/outrigger/pg/classify"
)

// A prepared statement is planned for the schema it was prepared under.
// Postgres re-plans a session's own statements when the schema changes and
// fails those whose result type changed; a shared statement, though, was
// prepared by whichever client came first, perhaps before the change. So
// DDL seen on the listener moves the statement epoch on (when it is sent,
// and again when its transaction ends), and from then on a Parse of any
// text gets a new shared name, prepared anew on the server it lands on.

// schemaWords are the first words of the statements that can change what
// a prepared statement means.
var schemaWords = [][]byte{[]byte("create"), []byte("alter"), []byte("drop"), []byte("comment"), []byte("import")}

// mayChangeSchema reports whether a statement of sql may start with a word
// of schemaWords. It reads the text in place and allocates nothing; a true
// answer is confirmed by the classifier (isDDL).
func mayChangeSchema(sql []byte) bool {
	for {
		w := leadingWord(sql)
		for _, k := range schemaWords {
			if bytes.EqualFold(w, k) {
				return true
			}
		}
		i := bytes.IndexByte(sql, ';')
		if i < 0 {
			return false
		}
		sql = sql[i+1:]
	}
}

// isDDL reports whether sql (classified as res, when the policy already
// did) changes the schema other than by creating temporary objects, which
// only the session that creates them sees.
func (s *session) isDDL(sql []byte, res *classify.Result) bool {
	if res == nil {
		res = s.h.classes.ClassifyBytes(sql)
	}
	for i := range res.Statements {
		st := &res.Statements[i]
		if st.Kind != classify.KindDDL {
			continue
		}
		temp := false
		for _, e := range st.Effects {
			temp = temp || e.Kind == classify.EffectPin && e.Reason == classify.PinTempTable
		}
		if !temp {
			return true
		}
	}
	return false
}

// schemaChanging moves the statement epoch on for DDL about to be sent,
// and marks the transaction so that its end does so again. mu held.
func (s *session) schemaChanging() {
	s.h.epoch.Add(1)
	s.txDDL = true
}

// leadingWord returns the first word of sql after blanks, semicolons and
// comments, as it is in sql (no copy).
func leadingWord(sql []byte) []byte {
	i := 0
	for i < len(sql) {
		switch {
		case sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '\f' || sql[i] == ';' || sql[i] == '(':
			i++
		case sql[i] == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := i + 2
			for j+1 < len(sql) && !(sql[j] == '*' && sql[j+1] == '/') {
				j++
			}
			i = j + 2
		default:
			j := i
			for j < len(sql) && (sql[j]|0x20 >= 'a' && sql[j]|0x20 <= 'z') {
				j++
			}
			return sql[i:j]
		}
	}
	return nil
}
