package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPGLoad is issue 3's load case: 200 pgx clients through one pool of
// 4 server connections in transaction mode, a mixed workload (prepared
// selects with arguments, inserts in explicit transactions, simple
// protocol queries, batches) for 20 s. Every reply is checked against what
// was asked (a reply routed to the wrong client fails), no operation may
// fail, every committed row is there, nothing pins, and the server never
// sees more than 4 connections from Outrigger (sampled every 500 ms).
func TestPGLoad(t *testing.T) {
	integrationOnly(t)
	const (
		clients  = 200
		poolSize = 4
		duration = 20 * time.Second
		items    = 1000
	)
	p := startPGProxy(t, "transaction", poolSize, "")
	p.PG.Exec(t, fmt.Sprintf(`create table load_items (id int primary key, v text);
		insert into load_items select g, 'item-' || g from generate_series(1, %d) g;
		create table load_log (client int, n int, v text);
		alter table load_items owner to app; alter table load_log owner to app`, items))
	ctx := testCtx(t, duration+60*time.Second)

	conns := make([]*pgx.Conn, clients)
	var wg sync.WaitGroup
	connErrs := make(chan error, clients)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := pgx.Connect(cctx, p.dsn("app", "app", "app"))
			if err != nil {
				connErrs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(connErrs)
	for err := range connErrs {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	})

	// The sampler counts the app user's backends every 500 ms.
	super := superConn(t, p.PG)
	stop := make(chan struct{})
	var maxBackends, samples atomic.Int64
	var samplerErr atomic.Value
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var n int64
			if err := super.QueryRow(ctx, "select count(*) from pg_stat_activity where usename = 'app'").Scan(&n); err != nil {
				samplerErr.Store(err)
				return
			}
			samples.Add(1)
			for {
				m := maxBackends.Load()
				if n <= m || maxBackends.CompareAndSwap(m, n) {
					break
				}
			}
		}
	}()

	var (
		ops       atomic.Int64
		failures  atomic.Int64
		errMu     sync.Mutex
		firstErrs []string
		committed = make([]int, clients)
		opCounts  [5]atomic.Int64
	)
	fail := func(client, op int, err error) {
		failures.Add(1)
		errMu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf("client %d op %d: %v", client, op, err))
		}
		errMu.Unlock()
	}
	deadline := time.Now().Add(duration)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for n := 0; time.Now().Before(deadline); n++ {
				op := rng.IntN(5)
				tag := "c" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
				octx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := loadOp(octx, c, op, i, n, tag, rng)
				cancel()
				if err != nil {
					fail(i, op, err)
					if c.IsClosed() {
						return
					}
					continue
				}
				if op == 2 {
					committed[i] += 2
				}
				opCounts[op].Add(1)
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-samplerDone

	t.Logf("%d operations in %v (%.0f/s) by %d clients on %d servers; by kind %d/%d/%d/%d/%d; max backends %d over %d samples",
		ops.Load(), duration, float64(ops.Load())/duration.Seconds(), clients, poolSize,
		opCounts[0].Load(), opCounts[1].Load(), opCounts[2].Load(), opCounts[3].Load(), opCounts[4].Load(),
		maxBackends.Load(), samples.Load())
	if f := failures.Load(); f != 0 {
		t.Errorf("%d operations failed; first: \n%s", f, strings.Join(firstErrs, "\n"))
	}
	if err, _ := samplerErr.Load().(error); err != nil {
		t.Fatalf("sampler: %v", err)
	}
	if s := samples.Load(); s < int64(duration/time.Second) {
		t.Errorf("only %d samples of the server's connections", s)
	}
	if m := maxBackends.Load(); m > poolSize {
		t.Errorf("the server had %d connections from Outrigger at once, pool size is %d", m, poolSize)
	}
	if ops.Load() < clients*5 {
		t.Errorf("only %d operations: the load did not run", ops.Load())
	}

	// Every committed row is there, per client.
	rows, err := super.Query(ctx, "select client, count(*)::int from load_log group by client")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for rows.Next() {
		var c, n int
		if err := rows.Scan(&c, &n); err != nil {
			t.Fatal(err)
		}
		got[c] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, want := range committed {
		if got[i] != want {
			t.Errorf("client %d: %d rows in load_log, committed %d", i, got[i], want)
		}
	}
	// Nothing in this workload is session state.
	_, metrics := p.admin("/metrics")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "outrigger_pg_pins_total{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("a client was pinned: %s", line)
		}
	}
	// And every client is still a working session.
	for i, c := range conns {
		var s string
		if err := c.QueryRow(ctx, "select $1::text", "end"+strconv.Itoa(i)).Scan(&s); err != nil || s != "end"+strconv.Itoa(i) {
			t.Fatalf("client %d after the run: %q %v", i, s, err)
		}
	}
}

// loadOp runs one operation of the mixed workload and checks its result.
func loadOp(ctx context.Context, c *pgx.Conn, op, client, n int, tag string, rng *rand.Rand) error {
	switch op {
	case 0: // prepared select with an argument
		id := 1 + rng.IntN(1000)
		var gotID int
		var v string
		if err := c.QueryRow(ctx, "select id, v from load_items where id = $1", id).Scan(&gotID, &v); err != nil {
			return err
		}
		if gotID != id || v != "item-"+strconv.Itoa(id) {
			return fmt.Errorf("asked for item %d, got %d %q", id, gotID, v)
		}
	case 1: // prepared select with several arguments, echoing the tag
		a, b := rng.IntN(1000), rng.IntN(1000)
		var sum int
		var s string
		if err := c.QueryRow(ctx, "select $1::int + $2::int, $3::text", a, b, tag).Scan(&sum, &s); err != nil {
			return err
		}
		if sum != a+b || s != tag {
			return fmt.Errorf("asked %d+%d %q, got %d %q", a, b, tag, sum, s)
		}
	case 2: // inserts in an explicit transaction
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		for k := range 2 {
			if _, err := tx.Exec(ctx, "insert into load_log (client, n, v) values ($1, $2, $3)", client, 2*n+k, tag); err != nil {
				return err
			}
		}
		var inTx int
		if err := tx.QueryRow(ctx, "select count(*)::int from load_log where client = $1 and v = $2", client, tag).Scan(&inTx); err != nil {
			return err
		}
		if inTx != 2 {
			return fmt.Errorf("own transaction sees %d of its 2 rows", inTx)
		}
		return tx.Commit(ctx)
	case 3: // simple protocol
		var s string
		var pid int
		if err := c.QueryRow(ctx, "select $1::text, pg_backend_pid()", pgx.QueryExecModeSimpleProtocol, tag).Scan(&s, &pid); err != nil {
			return err
		}
		if s != tag {
			return fmt.Errorf("asked %q, got %q", tag, s)
		}
		if _, err := c.Exec(ctx, "select 1; select 2"); err != nil {
			return err
		}
	case 4: // a batch
		b := &pgx.Batch{}
		base := rng.IntN(1000)
		for k := range 5 {
			b.Queue("select $1::int * 3", base+k)
		}
		br := c.SendBatch(ctx, b)
		for k := range 5 {
			var v int
			if err := br.QueryRow().Scan(&v); err != nil {
				br.Close()
				return err
			}
			if v != (base+k)*3 {
				br.Close()
				return fmt.Errorf("batch %d: asked %d*3, got %d", k, base+k, v)
			}
		}
		return br.Close()
	}
	return nil
}
