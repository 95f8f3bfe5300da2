package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

func main() {
	switch os.Args[1] {
	case "backend":
		backend(os.Args[2])
	case "proxy":
		fs := flag.NewFlagSet("proxy", flag.ExitOnError)
		mode := fs.String("mode", "goroutine", "goroutine or gnet")
		listen := fs.String("listen", "", "")
		up := fs.String("up", "", "")
		loops := fs.Int("loops", 1, "")
		fs.Parse(os.Args[2:])
		if *mode == "gnet" {
			runGnet(*listen, *up, *loops)
		} else {
			runGoroutine(*listen, *up)
		}
	case "run":
		drive()
	}
}

// backend echoes every read, one goroutine per connection.
func backend(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			buf := make([]byte, 16<<10)
			for {
				n, err := c.Read(buf)
				if err != nil {
					c.Close()
					return
				}
				c.Write(buf[:n])
			}
		}()
	}
}

func runGoroutine(listen, up string) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4<<10)
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", up)
			if err != nil {
				return
			}
			defer u.Close()
			for {
				if _, err := u.Write(buf[:n]); err != nil {
					return
				}
				m, err := u.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:m]); err != nil {
					return
				}
				if n, err = c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

// pair is a client and its upstream, both on one event loop.
type pair struct {
	client, up gnet.Conn
	pending    []byte // what the client sent before the upstream was open
	isUp       bool
}

type relay struct {
	gnet.BuiltinEventEngine
	up *net.TCPAddr
}

func (r *relay) OnTraffic(c gnet.Conn) gnet.Action {
	p, _ := c.Context().(*pair)
	data, _ := c.Next(-1)
	if p == nil { // a client's first bytes: open its upstream on this loop
		p = &pair{client: c, pending: append([]byte(nil), data...)}
		c.SetContext(p)
		ctx := gnet.NewNetAddrContext(context.Background(), r.up)
		ctx = gnet.NewContext(ctx, &pair{client: c, isUp: true})
		if _, err := c.EventLoop().Register(ctx, r.up); err != nil {
			return gnet.Close
		}
		return gnet.None
	}
	if p.isUp {
		p.client.Write(data)
		return gnet.None
	}
	if p.up == nil {
		p.pending = append(p.pending, data...)
		return gnet.None
	}
	p.up.Write(data)
	return gnet.None
}

func (r *relay) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if up, ok := c.Context().(*pair); ok && up.isUp {
		cp := up.client.Context().(*pair)
		cp.up = c
		if len(cp.pending) > 0 {
			c.Write(cp.pending)
			cp.pending = nil
		}
	}
	return nil, gnet.None
}

func runGnet(listen, up string, loops int) {
	ua, err := net.ResolveTCPAddr("tcp", up)
	if err != nil {
		panic(err)
	}
	err = gnet.Run(&relay{up: ua}, "tcp://"+listen, gnet.WithNumEventLoop(loops), gnet.WithMulticore(loops > 1),
		gnet.WithLoadBalancing(gnet.LeastConnections), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	if err != nil {
		panic(err)
	}
}

func cpuTicks(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func rssKiB(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

func start(args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], args...)
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		panic(err)
	}
	time.Sleep(300 * time.Millisecond)
	return c
}

// load runs clients ping-pong round trips of size bytes for d; returns
// the round trips done.
func load(addr string, clients, size int, d time.Duration) int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				panic(err)
			}
			defer c.Close()
			msg := make([]byte, size)
			buf := make([]byte, size)
			for time.Now().Before(stop) {
				c.Write(msg)
				if _, err := io.ReadFull(c, buf); err != nil {
					panic(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

func drive() {
	be := start("backend", "127.0.0.1:7701")
	defer be.Process.Kill()
	type contestant struct {
		name string
		args []string
	}
	cs := []contestant{
		{"goroutine", []string{"proxy", "-mode", "goroutine", "-listen", "127.0.0.1:7702", "-up", "127.0.0.1:7701"}},
		{"gnet-1loop", []string{"proxy", "-mode", "gnet", "-loops", "1", "-listen", "127.0.0.1:7703", "-up", "127.0.0.1:7701"}},
		{"gnet-2loops", []string{"proxy", "-mode", "gnet", "-loops", "2", "-listen", "127.0.0.1:7704", "-up", "127.0.0.1:7701"}},
	}
	addrs := []string{"127.0.0.1:7702", "127.0.0.1:7703", "127.0.0.1:7704"}
	clients, _ := strconv.Atoi(os.Getenv("CLIENTS"))
	if clients == 0 {
		clients = 64
	}
	rounds, _ := strconv.Atoi(os.Getenv("ROUNDS"))
	if rounds == 0 {
		rounds = 3
	}
	procs := make([]*exec.Cmd, len(cs))
	for i, c := range cs {
		procs[i] = start(c.args...)
		defer procs[i].Process.Kill()
	}
	for r := range rounds {
		for i, c := range cs {
			pid := procs[i].Process.Pid
			t0 := cpuTicks(pid)
			n := load(addrs[i], clients, 100, 5*time.Second)
			t1 := cpuTicks(pid)
			fmt.Printf("round %d %-12s clients=%d rt/s=%.0f cpu_us_per_rt=%.2f\n", r, c.name, clients, float64(n)/5, float64(t1-t0)*10000/float64(n))
		}
	}
	// Idle: 5000 clients that sent nothing (no upstream yet).
	for i, c := range cs {
		pid := procs[i].Process.Pid
		before := rssKiB(pid)
		var conns []net.Conn
		for range 5000 {
			cc, err := net.Dial("tcp", addrs[i])
			if err != nil {
				panic(err)
			}
			conns = append(conns, cc)
		}
		time.Sleep(2 * time.Second)
		after := rssKiB(pid)
		fmt.Printf("idle %-12s rss %d KiB -> %d KiB: %.2f KiB per idle client\n", c.name, before, after, float64(after-before)/5000)
		for _, cc := range conns {
			cc.Close()
		}
	}
}
