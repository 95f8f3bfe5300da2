package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/bench"
)

// idleSettle is how long the proxy gets to settle before its RSS is read.
const idleSettle = 2 * time.Second

// dialIdle opens one idle client: for Postgres, startup and authentication
// done; for Redis, one PING answered. The client then stays quiet until it
// is closed.
func dialIdle(ctx context.Context, protocol, addr string) (io.Closer, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if protocol == bench.Postgres {
		c, err := pgconn.Connect(ctx, pgDSN(addr))
		if err != nil {
			return nil, err
		}
		return pgCloser{c}, nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+PONG") {
		c.Close()
		return nil, fmt.Errorf("PING answered %q (%v)", strings.TrimSpace(line), err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

type pgCloser struct{ c *pgconn.PgConn }

func (p pgCloser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return p.c.Close(ctx)
}

// measureIdle reads pid's RSS, then opens idle clients to addr up to each
// of counts (ascending) in turn, reading the RSS after each step. The first
// client that fails ends the measurement; that count and the larger ones get
// the error.
func measureIdle(ctx context.Context, protocol, contestant, addr string, pid int, counts []int) []bench.Idle {
	out := make([]bench.Idle, 0, len(counts))
	fail := func(from int, msg string) []bench.Idle {
		for _, n := range counts[from:] {
			out = append(out, bench.Idle{Protocol: protocol, Contestant: contestant, Clients: n, Error: msg})
		}
		return out
	}
	time.Sleep(idleSettle / 2)
	base, err := bench.RSSKiB(pid)
	if err != nil {
		return fail(0, err.Error())
	}
	var mu sync.Mutex
	var conns []io.Closer
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.Close() })
		}
		wg.Wait()
	}()
	// Postgres clients authenticate with SCRAM, which is CPU-bound on both
	// sides; a few at a time keeps the proxy, not the queue, the limit.
	workers := 16
	if protocol == bench.Postgres {
		workers = 4
	}
	for i, n := range counts {
		var firstErr error
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Go(func() {
				for k := range next {
					c, err := dialIdle(ctx, protocol, addr)
					mu.Lock()
					if err != nil {
						if firstErr == nil {
							firstErr = fmt.Errorf("client %d of %d: %v", k+1, n, oneLine(err.Error()))
						}
					} else {
						conns = append(conns, c)
					}
					mu.Unlock()
				}
			})
		}
		for k := len(conns); k < n; k++ {
			mu.Lock()
			stop := firstErr != nil
			mu.Unlock()
			if stop || ctx.Err() != nil {
				break
			}
			next <- k
		}
		close(next)
		wg.Wait()
		if firstErr != nil {
			return fail(i, firstErr.Error())
		}
		if ctx.Err() != nil {
			return fail(i, ctx.Err().Error())
		}
		time.Sleep(idleSettle)
		rss, err := bench.RSSKiB(pid)
		if err != nil {
			return fail(i, err.Error())
		}
		out = append(out, bench.Idle{Protocol: protocol, Contestant: contestant, Clients: n, BaseKiB: base, RSSKiB: rss,
			PerClientKiB: float64(rss-base) / float64(n)})
	}
	return out
}
