package pool

import "time"

// waiter is one Acquire call parked in the wait queue. Its fields after
// queued are written under Pool.mu by whoever dequeues it (a release, a freed
// slot, the timeout, Close or Drain), before the one send on ready; the
// waiting goroutine reads them after receiving.
type waiter[C any] struct {
	prev, next *waiter[C]
	// queued is true while the waiter is in the queue (under Pool.mu).
	queued bool
	// ready receives once, when the waiter leaves the queue for any reason
	// other than its own context.
	ready chan struct{}
	// enq is when the waiter joined the queue.
	enq time.Time

	// The outcome, exactly one of: cn != nil (a connection handed off,
	// counted in inUse), err != nil, or neither (a permit to dial, counted in
	// dialing).
	cn     *conn[C]
	err    error
	waited time.Duration
}

// waitQueue is an intrusive FIFO list of waiters: O(1) push, pop and removal
// of a waiter whose context ended. Guarded by Pool.mu.
type waitQueue[C any] struct {
	head, tail *waiter[C]
	n          int
}

func (q *waitQueue[C]) len() int { return q.n }

func (q *waitQueue[C]) push(w *waiter[C]) {
	w.queued = true
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
}

// popFront removes and returns the oldest waiter, or nil.
func (q *waitQueue[C]) popFront() *waiter[C] {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}

// remove takes a queued waiter out of the queue.
func (q *waitQueue[C]) remove(w *waiter[C]) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
	w.queued = false
	q.n--
}
