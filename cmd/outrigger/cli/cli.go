package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/pg"
	"github.com/outrigger/outrigger/redis"
	"github.com/outrigger/outrigger/sidecar"
)

// Version and Commit are set at link time (-ldflags "-X ...cli.Version=v1.2.3");
// Commit falls back to the VCS revision Go embeds.
var (
	Version = "dev"
	Commit  = ""
)

// Options let a caller (main, or a test) shape the process.
type Options struct {
	Stdout, Stderr io.Writer
	// Signals delivers SIGHUP, SIGTERM and SIGINT; nil subscribes to the real ones.
	Signals <-chan os.Signal
	// Environ replaces os.Environ for config loading.
	Environ []string
	// Builders add listener kinds (the protocol frontends) to the sidecar core.
	Builders map[config.ListenerKind]sidecar.Builder
	// Dialer opens upstream connections.
	Dialer sidecar.Dialer
	// Started, if set, is called with the running server once the first
	// config is live.
	Started func(*sidecar.Server)
}

const usage = `outrigger: a database-access sidecar

Usage:
  outrigger run -c FILE      run the sidecar (also: outrigger -c FILE)
  outrigger check -c FILE    validate a config; every problem is listed, exit 1 if any
  outrigger policy explain -c FILE [--principal P] [--user U] [--database D] [--listener L]
                 [--source ADDR] (--sql "..." | --redis "SET k v")
                             print the policy's decision for one request; exit 1 if refused
  outrigger version          print version, commit and Go version

Flags (run, check):
`

// Main runs the command line args and returns the process exit code.
func Main(ctx context.Context, args []string, opts Options) int {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(opts.Stdout, versionLine())
		return 0
	case "help":
		fmt.Fprint(opts.Stdout, usage)
		fs := newFlags(&opts)
		fs.SetOutput(opts.Stdout)
		fs.PrintDefaults()
		return 0
	case "policy":
		return policyCmd(args, opts)
	case "run", "check":
	default:
		fmt.Fprintf(opts.Stderr, "outrigger: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	fs := newFlags(&opts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(opts.Stderr, "outrigger: %v\n", err)
		return 2
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = lookupEnv(opts.Environ, "OUTRIGGER_CONFIG")
	}
	if path == "" {
		fmt.Fprintln(opts.Stderr, "outrigger: no config: pass -c FILE (or set OUTRIGGER_CONFIG)")
		return 2
	}
	src := config.Source{Path: path, Environ: opts.Environ, Flags: fs}
	if cmd == "check" {
		return check(src, opts)
	}
	return run(ctx, src, opts)
}

func newFlags(opts *Options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("outrigger", pflag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprint(opts.Stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringP("config", "c", "", "config file (YAML); OUTRIGGER_CONFIG also works")
	fs.String("admin.listen", "", "override admin.listen")
	fs.String("log.level", "", "override log.level (debug | info | warn | error)")
	fs.String("log.format", "", "override log.format (json | text)")
	fs.Duration("shutdown.drain_timeout", 0, "override shutdown.drain_timeout")
	return fs
}

func lookupEnv(environ []string, key string) string {
	if environ == nil {
		return os.Getenv(key)
	}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func versionLine() string {
	commit := Commit
	if commit == "" {
		commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					commit = s.Value
				}
			}
		}
	}
	return fmt.Sprintf("outrigger %s commit %s %s %s/%s", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// check validates the config and the TLS files it names, listing every problem.
func check(src config.Source, opts Options) int {
	cfg, err := config.Load(src)
	errs := config.Flatten(err)
	if cfg != nil {
		errs = append(errs, checkTLS(cfg)...)
		errs = append(errs, checkKinds(cfg, builders(opts))...)
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(opts.Stdout, "%s: %v\n", src.Path, e)
		}
		fmt.Fprintf(opts.Stdout, "%d problem(s)\n", len(errs))
		return 1
	}
	parts := []string{}
	for _, l := range cfg.Listeners() {
		parts = append(parts, fmt.Sprintf("%s %s %s", l.Kind, l.Name, l.Listen))
	}
	admin := cfg.Admin.Listen
	fmt.Fprintf(opts.Stdout, "%s: ok: %d listener(s): %s; admin %s\n", src.Path, len(parts), strings.Join(parts, ", "), admin)
	return 0
}

// builders are the protocol frontends of this build, plus any the caller adds.
func builders(opts Options) map[config.ListenerKind]sidecar.Builder {
	b := map[config.ListenerKind]sidecar.Builder{config.KindRedis: redis.NewHandler, config.KindPostgres: pg.NewHandler}
	for k, v := range opts.Builders {
		b[k] = v
	}
	return b
}

// checkKinds reports listeners of a kind this build cannot run, as run would.
func checkKinds(cfg *config.Config, builders map[config.ListenerKind]sidecar.Builder) []error {
	var errs []error
	for _, l := range cfg.Listeners() {
		if l.Kind == config.KindTCP || l.Kind == config.KindHTTP || builders[l.Kind] != nil {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: this build has no %s listener", l.Path, l.Kind))
	}
	return errs
}

// checkTLS loads every certificate, key and CA that the config names.
func checkTLS(cfg *config.Config) []error {
	var errs []error
	for name, p := range cfg.TLS {
		if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
			errs = append(errs, fmt.Errorf("tls.%s: %w", name, err))
		}
		if p.CA != "" {
			if b, err := os.ReadFile(p.CA); err == nil && !x509.NewCertPool().AppendCertsFromPEM(b) {
				errs = append(errs, fmt.Errorf("tls.%s.ca: no PEM certificates in %s", name, p.CA))
			}
		}
	}
	for _, l := range cfg.Listeners() {
		for i, u := range l.Upstreams() {
			if _, err := sidecar.ClientTLSConfig(u.TLS); err != nil {
				key := l.Path + ".upstream"
				if _, ok := l.Section.(*config.HTTP); ok {
					key = fmt.Sprintf("%s.routes[%d].upstream", l.Path, i)
				}
				errs = append(errs, fmt.Errorf("%s.tls: %w", key, err))
			}
		}
	}
	return errs
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// run is `outrigger run`: serve until SIGTERM, SIGINT or POST /drain.
func run(ctx context.Context, src config.Source, opts Options) int {
	cfg, err := config.Load(src)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "outrigger: %s: invalid config:\n", src.Path)
		for _, e := range config.Flatten(err) {
			fmt.Fprintf(opts.Stderr, "  %v\n", e)
		}
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Log.Level))
	log := newLogger(opts.Stderr, cfg.Log.Format, level)
	procs := newProcs()
	procs.apply(cfg.Runtime, log)
	m := metrics.New(metrics.BuildInfo{Version: Version, Commit: Commit})
	srv := sidecar.NewServer(sidecar.Options{Logger: log, Metrics: m, Builders: builders(opts), Dialer: opts.Dialer, Version: Version})
	if err := srv.Apply(cfg); err != nil {
		log.Error("cannot start", "errors", errorStrings(err))
		srv.Shutdown()
		return 1
	}
	m.ConfigReloads.WithLabelValues("success").Inc()
	// Both series exist from the start, so increase() sees the first
	// rejection.
	m.ConfigReloads.WithLabelValues("rejected").Add(0)
	m.ConfigLastReloadSuccess.SetToCurrentTime()
	log.Info("outrigger started", "version", Version, "config", src.Path, "hash", config.Hash(cfg))

	sigs := opts.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(ch)
		sigs = ch
	}
	changes := make(chan config.Change, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if cfg.Reload.Watch && src.Path != "" {
		w, err := config.NewWatcher(src.Path, cfg.Reload.Debounce)
		if err != nil {
			log.Warn("config file watch unavailable; SIGHUP still reloads", "err", err)
		} else {
			go w.Run(wctx, changes, func(err error) { log.Warn("config watch", "err", err) })
		}
	}
	if opts.Started != nil {
		opts.Started(srv)
	}

	reload := func(cause string, at time.Time) {
		start := time.Now()
		next, err := config.Load(src)
		if err == nil {
			err = srv.Apply(next)
		}
		if err != nil {
			m.ConfigReloads.WithLabelValues("rejected").Inc()
			log.Error("config rejected; the running config stays", "cause", cause, "errors", errorStrings(err))
			return
		}
		level.Set(parseLevel(next.Log.Level))
		procs.apply(next.Runtime, log)
		if next.Log.Format != cfg.Log.Format || next.Reload != cfg.Reload {
			log.Warn("log.format and reload.* take effect at the next start; the running values stay",
				"log.format", cfg.Log.Format, "reload.watch", cfg.Reload.Watch, "reload.debounce", cfg.Reload.Debounce.String())
		}
		m.ConfigReloads.WithLabelValues("success").Inc()
		m.ConfigLastReloadSuccess.SetToCurrentTime()
		m.ConfigReloadApply.Observe(time.Since(start).Seconds())
		if !at.IsZero() {
			m.ConfigPushLatency.Observe(time.Since(at).Seconds())
		}
		log.Info("config reloaded", "cause", cause, "hash", config.Hash(next), "apply_seconds", time.Since(start).Seconds())
	}

	for {
		select {
		case <-ctx.Done():
			srv.Shutdown()
			return 0
		case <-srv.DrainRequested():
			log.Info("drain requested over the admin API")
			srv.Shutdown()
			return 0
		case ch := <-changes:
			reload("file", ch.At)
		case <-srv.ReloadRequested():
			reload("admin console", time.Time{})
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload("SIGHUP", time.Time{})
				continue
			}
			log.Info("signal received", "signal", sig.String())
			srv.Shutdown()
			return 0
		}
	}
}

func errorStrings(err error) []string {
	var out []string
	for _, e := range config.Flatten(err) {
		out = append(out, e.Error())
	}
	return out
}

// procs applies runtime.max_procs. It remembers the runtime's own
// GOMAXPROCS from before the first change, which "auto" halves.
type procs struct {
	runtimeDefault int
	envSet         bool
}

func newProcs() *procs {
	_, env := os.LookupEnv("GOMAXPROCS")
	return &procs{runtimeDefault: runtime.GOMAXPROCS(0), envSet: env}
}

func (p *procs) apply(r config.Runtime, log *slog.Logger) {
	n := r.Procs(p.runtimeDefault, p.envSet)
	if prev := runtime.GOMAXPROCS(n); prev != n {
		log.Info("runtime threads set", "max_procs", r.MaxProcs, "gomaxprocs", n, "cpus", runtime.NumCPU())
	}
}
