package pg

import (
	"time"

	"github.com/outrigger/outrigger/pg/classify"
)

// itemKind is the client message a reply from the server answers.
type itemKind uint8

const (
	itParse itemKind = iota + 1
	itBind
	itDescribe
	itExecute
	itClose
	itSync
	itQuery
	itFunc
	// itHidden is a simple query Outrigger sent itself (bringing a
	// server's session parameters in line): every reply to it is dropped.
	itHidden
	// itProbe is Outrigger's query for the values of parameters a
	// rolled-back transaction touched (see probeSettings).
	itProbe
)

// action says what happens to the reply of an item.
type action uint8

const (
	actForward action = iota
	// actDrop: the client never sent this message (a Parse re-preparing a
	// statement on a new server, a Close for an evicted one); its reply is
	// not passed on.
	actDrop
	// actSynth: the client sent it but the server never sees it (a Parse
	// the server already has, a Close of a shared statement, a Sync with
	// no server): Outrigger answers in its place, in order.
	actSynth
	// actRefuse: Outrigger's statement in place of one the policy refused
	// (see refuse): a success reply is dropped, and the error it fails
	// with is replaced by the refusal (errMsg).
	actRefuse
)

// item is one expected reply, in the order the server (or Outrigger)
// will answer.
type item struct {
	kind   itemKind
	act    action
	synth  byte   // the reply type an actSynth item answers with
	server string // the shared statement name a Parse prepares or a hidden Close closes
	// chg is the change the message made to the client's statement names,
	// undone if the message fails or the server skips it.
	chg *stmtChange
	// cs is the client statement a Parse, Bind, Describe or Execute uses:
	// the server's errors name it by its shared name, which the client
	// gets back as its own.
	cs *clientStmt
	// For a message that replaces the server's unnamed statement (a Parse
	// of it, a Close of it, a simple Query): the server's unnamedSeq it
	// set, and the statement and sequence before it, which a skip gives
	// back (see setUnnamed).
	unnamedSeq, wasSeq uint32
	was                *clientStmt
	tag                string // an actSynth CommandComplete's tag
	// effects are the session-state effects of a Query, or of the
	// statement an Execute runs, applied once they are committed.
	effects []classify.Effect
	failed  bool
	start   time.Time
	// errMsg is an actSynth error reply, or an actRefuse refusal; on the
	// item that ends a round trip (Sync, Query), the error Outrigger
	// answered in that round trip, for its record.
	errMsg *Error
	// code is the SQLSTATE of the server's error in the round trip this
	// item ends.
	code string
	// ends marks an actSynth ReadyForQuery that ends a round trip Outrigger
	// answered alone: it is recorded (see record).
	ends bool
	obs  *observed
}

// queue is a FIFO of items; it reuses its backing array.
type queue struct {
	items []item
	head  int
	// ends counts the items pushed that end a round trip at the server
	// (Sync, Query, FunctionCall), and endsDone those answered or dropped:
	// round trip n (counted from 0) is answered once endsDone > n.
	ends, endsDone uint64
}

// endsTrip reports whether k's reply ends a round trip.
func endsTrip(k itemKind) bool { return k == itSync || k == itQuery || k == itFunc }

func (q *queue) empty() bool { return q.head == len(q.items) }

func (q *queue) len() int { return len(q.items) - q.head }

func (q *queue) push(it item) {
	if endsTrip(it.kind) {
		q.ends++
	}
	q.items = append(q.items, it)
}

// front returns the next item, or nil.
func (q *queue) front() *item {
	if q.empty() {
		return nil
	}
	return &q.items[q.head]
}

func (q *queue) pop() item {
	it := q.items[q.head]
	if endsTrip(it.kind) {
		q.endsDone++
	}
	q.items[q.head] = item{}
	q.head++
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	}
	return it
}

func (q *queue) reset() {
	q.endsDone = q.ends
	clear(q.items)
	q.items = q.items[:0]
	q.head = 0
}
