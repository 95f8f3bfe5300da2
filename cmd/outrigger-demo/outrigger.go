package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/sidecar"
)

//go:embed outrigger-demo.yaml
var configTemplate string

// The addresses the demo asks for; a busy one is replaced by a free port.
const (
	preferredAppDB = "127.0.0.1:6432"
	preferredCache = "127.0.0.1:6380"
	preferredAdmin = "127.0.0.1:9901"
)

// Listener names in outrigger-demo.yaml.
const (
	listenerAppDB = "appdb"
	listenerCache = "cache"
)

// startTimeout bounds how long outrigger may take to bring its first config
// live; stopTimeout how long it may take to return after SIGTERM (drain_timeout
// in outrigger-demo.yaml is 5 s).
const (
	startTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
)

// configData fills in outrigger-demo.yaml.
type configData struct {
	AppDB, Cache, Admin string // listen addresses
	Postgres, Redis     string // upstream addresses
}

// renderConfig returns outrigger-demo.yaml with data filled in.
func renderConfig(data configData) ([]byte, error) {
	tmpl, err := template.New("outrigger-demo.yaml").Option("missingkey=error").Parse(configTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// pickAddr returns preferred if it can be listened on now, else
// 127.0.0.1 with a free port, and whether it had to move.
func pickAddr(preferred string) (addr string, moved bool, err error) {
	if l, err := net.Listen("tcp", preferred); err == nil {
		_ = l.Close()
		return preferred, false, nil
	}
	port, err := testenv.PickFreePort()
	if err != nil {
		return "", false, err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), true, nil
}

// outrigger is the sidecar running in this process: cli.Main in a goroutine.
type outrigger struct {
	srv        *sidecar.Server
	configPath string
	logPath    string
	sigs       chan os.Signal
	exited     chan struct{} // closed when cli.Main has returned
	code       int           // cli.Main's exit code, valid once exited is closed
	logFile    *os.File
}

// startOutrigger makes the temp dir, writes the config and starts outrigger
// on it, then returns once its first config is live.
func (d *demo) startOutrigger(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "outrigger-demo-*")
	if err != nil {
		return err
	}
	d.tmp = tmp

	data := configData{Postgres: d.pg.Addr(), Redis: d.redis.Addr}
	for _, a := range []struct {
		what, preferred string
		dst             *string
	}{
		{"appdb listener", preferredAppDB, &data.AppDB},
		{"cache listener", preferredCache, &data.Cache},
		{"admin server", preferredAdmin, &data.Admin},
	} {
		addr, moved, err := pickAddr(a.preferred)
		if err != nil {
			return fmt.Errorf("find a free port for the %s: %w", a.what, err)
		}
		if moved {
			fmt.Fprintf(d.out, "  note: %s is busy; the %s uses %s instead\n", a.preferred, a.what, addr)
		}
		*a.dst = addr
	}
	cfg, err := renderConfig(data)
	if err != nil {
		return fmt.Errorf("render outrigger-demo.yaml: %w", err)
	}
	o := &outrigger{
		configPath: filepath.Join(tmp, "outrigger.yaml"),
		logPath:    filepath.Join(tmp, "outrigger.log"),
		sigs:       make(chan os.Signal, 1),
		exited:     make(chan struct{}),
	}
	if err := os.WriteFile(o.configPath, cfg, 0o600); err != nil {
		return err
	}
	if o.logFile, err = os.Create(o.logPath); err != nil {
		return err
	}
	d.or = o

	fmt.Fprintln(d.out, "\nStarting outrigger in this process (cli.Main)...")
	t0 := time.Now()
	if err := o.start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  config    %s\n", o.configPath)
	fmt.Fprintf(d.out, "  log       %s (JSON)\n", o.logPath)
	fmt.Fprintf(d.out, "  %-9s %-16s -> postgres %s\n", listenerAppDB, o.srv.ListenerAddr(listenerAppDB), d.pg.Addr())
	fmt.Fprintf(d.out, "  %-9s %-16s -> redis %s\n", listenerCache, o.srv.ListenerAddr(listenerCache), d.redis.Addr)
	fmt.Fprintf(d.out, "  admin     %-16s (%v)\n", o.srv.AdminAddr(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// start runs cli.Main and waits for its Started hook.
func (o *outrigger) start(ctx context.Context) error {
	started := make(chan *sidecar.Server, 1)
	go func() {
		defer close(o.exited)
		o.code = cli.Main(context.Background(), []string{"run", "-c", o.configPath}, cli.Options{
			Stdout:  o.logFile,
			Stderr:  o.logFile,
			Signals: o.sigs,
			Environ: environWithout(os.Environ(), config.EnvPrefix),
			Started: func(s *sidecar.Server) { started <- s },
		})
	}()
	select {
	case o.srv = <-started:
		return nil
	case <-o.exited:
		return fmt.Errorf("outrigger exited with code %d before it started (its log is %s)", o.code, o.logPath)
	case <-time.After(startTimeout):
		return fmt.Errorf("outrigger not started after %v (its log is %s)", startTimeout, o.logPath)
	case <-ctx.Done():
		return errInterrupted
	}
}

// stop sends SIGTERM through cli.Options.Signals and waits for cli.Main to
// return. It can be called more than once. If cli.Main had returned by itself
// before, that was reported then, and stop has nothing to add.
func (o *outrigger) stop() error {
	select {
	case <-o.exited:
		_ = o.logFile.Close()
		return nil
	default:
	}
	select {
	case o.sigs <- syscall.SIGTERM:
	default: // one is already pending
	}
	select {
	case <-o.exited:
	case <-time.After(stopTimeout):
		return fmt.Errorf("still running %v after SIGTERM", stopTimeout)
	}
	_ = o.logFile.Close()
	if o.code != 0 {
		return fmt.Errorf("exited with code %d", o.code)
	}
	return nil
}

// environWithout returns environ less the variables whose name starts with
// prefix, so an OUTRIGGER_* setting in the user's shell cannot bend the demo
// config (and the summary) out of shape.
func environWithout(environ []string, prefix string) []string {
	out := []string{}
	for _, kv := range environ {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}
