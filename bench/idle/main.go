// Command idle measures the memory a proxy spends per idle client: it reads
// the proxy's resident set size from /proc, opens N connections that each
// send one PING (RESP) and read the reply, waits for the proxy to settle,
// reads the RSS again and prints the difference per client. The
// connections stay open until it exits.
//
//	go run ./bench/idle -addr 127.0.0.1:6380 -pid $(pidof outrigger) -n 3000
//
// Raise the open-file limit first (ulimit -n) for large N, for this process
// and the proxy. The side-by-side harness (bench/sidebyside) takes the same
// measurement for every contestant, Postgres clients included.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6380", "the proxy's RESP address")
	pid := flag.Int("pid", 0, "the proxy's process id")
	n := flag.Int("n", 1000, "idle clients to open")
	settle := flag.Duration("settle", 2*time.Second, "wait before the second reading")
	flag.Parse()
	if *pid == 0 {
		fmt.Fprintln(os.Stderr, "idle: -pid is required")
		os.Exit(2)
	}
	before, err := bench.RSSKiB(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idle: client %d: %v\n", i, err)
			os.Exit(1)
		}
		if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			fmt.Fprintf(os.Stderr, "idle: client %d: %v\n", i, err)
			os.Exit(1)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "+PONG") {
			fmt.Fprintf(os.Stderr, "idle: client %d: %q %v\n", i, line, err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	time.Sleep(*settle)
	after, err := bench.RSSKiB(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
	fmt.Printf("%d idle clients: RSS %d KiB -> %d KiB, %.1f KiB per client\n",
		len(conns), before, after, float64(after-before)/float64(len(conns)))
}
