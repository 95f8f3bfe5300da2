package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/policy"
)

// ErrDraining is returned by Apply once Shutdown has begun.
var ErrDraining = errors.New("sidecar: draining")

// Options configure a Server.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Builders maps listener kinds to handler builders; tcp and http are
	// built in, the protocol frontends add postgres and redis.
	Builders map[config.ListenerKind]Builder
	// Dialer opens upstream connections; nil means a plain net.Dialer.
	Dialer Dialer
	// Version is the build's version, for handlers that report it.
	Version string
	// Stdout and Stderr are where access_log.output stdout and stderr
	// write; nil means the process's own.
	Stdout, Stderr io.Writer
}

// Server runs the listeners of the live config version and moves them from
// one version to the next. It is the process's whole runtime apart from main.
type Server struct {
	opts Options
	log  *slog.Logger
	m    *metrics.Metrics

	mu        sync.Mutex   // serialises Apply and Shutdown
	state     sync.RWMutex // guards listeners and admin for readers
	cfg       atomic.Pointer[config.Config]
	listeners map[string]*Listener // by listen address as configured
	profiles  map[string]*profileRef
	admin     *adminServer
	// policy is the live policy engine, shared by every handler of every
	// config version; policyHash is the hash of the policy section it was
	// compiled from.
	policy     policy.Live
	policyHash string
	// accessLog and tracer are shared by every handler of every config
	// version too, and follow the access_log and tracing sections.
	accessLog *AccessLog
	tracer    *Tracer
	retiring  sync.WaitGroup

	// refs are the handlers that hold connections: the current one of each
	// listener and the retired ones still draining (for GET /clients).
	refsMu sync.Mutex
	refs   map[*handlerRef]struct{}

	draining  atomic.Bool
	drainReq  chan struct{}
	drainOnce sync.Once
	reloadReq chan struct{}
}

type profileRef struct {
	p    *TLSProfile
	hash string
}

// NewServer returns a Server with no listeners; Apply starts them.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(metrics.BuildInfo{})
	}
	b := map[config.ListenerKind]Builder{config.KindTCP: NewTCPProxy, config.KindHTTP: NewHTTPProxy}
	for k, v := range opts.Builders {
		b[k] = v
	}
	opts.Builders = b
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{KeepAlive: 30 * time.Second}
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	return &Server{
		opts: opts, log: opts.Logger, m: opts.Metrics,
		accessLog: NewAccessLog(), tracer: NewTracer(),
		refs:      map[*handlerRef]struct{}{},
		listeners: map[string]*Listener{},
		profiles:  map[string]*profileRef{},
		drainReq:  make(chan struct{}),
		reloadReq: make(chan struct{}, 1),
	}
}

// Config is the live config version (nil before the first Apply).
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// AccessLog is the access log every handler writes to.
func (s *Server) AccessLog() *AccessLog { return s.accessLog }

// Tracer is the tracer every handler starts spans with.
func (s *Server) Tracer() *Tracer { return s.tracer }

// Metrics is the server's metric set.
func (s *Server) Metrics() *metrics.Metrics { return s.m }

// DrainRequested is closed when POST /drain asked the process to drain.
func (s *Server) DrainRequested() <-chan struct{} { return s.drainReq }

// ReloadRequested delivers a value each time a handler asks for the config
// to be read again (the Postgres admin console's RELOAD); requests made
// while one is pending merge into it.
func (s *Server) ReloadRequested() <-chan struct{} { return s.reloadReq }

// RequestReload asks the process to reload its config, as SIGHUP does.
func (s *Server) RequestReload() {
	select {
	case s.reloadReq <- struct{}{}:
	default:
	}
}

// Ready reports whether a config is live and the server is not draining.
func (s *Server) Ready() bool { return s.cfg.Load() != nil && !s.draining.Load() }

// ListenerAddr returns the bound address of the listener with that name (the
// real port when the config said :0), or nil.
func (s *Server) ListenerAddr(name string) net.Addr {
	s.state.RLock()
	defer s.state.RUnlock()
	for _, l := range s.listeners {
		if l.cur.Load().name == name {
			return l.Addr()
		}
	}
	return nil
}

// AdminAddr is the bound admin address, or nil when the admin server is off.
func (s *Server) AdminAddr() net.Addr {
	s.state.RLock()
	defer s.state.RUnlock()
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

// step is what Apply will do to one listener.
type step struct {
	ref     config.ListenerRef
	l       *Listener   // existing or newly bound
	bound   bool        // l is newly bound by this Apply
	handler *handlerRef // nil: keep the current handler
}

// Apply makes cfg the live config. It builds everything the new version needs
// first (TLS profiles, handlers, sockets, the admin server); if any of it
// fails, it undoes what it built and returns every error, and the running
// version stays as it was. Otherwise it swaps the new version in: listeners
// whose address is unchanged keep their socket, listeners whose config is
// unchanged keep their handler and connections, replaced handlers and removed
// listeners drain in the background for up to shutdown.drain_timeout.
func (s *Server) Apply(cfg *config.Config) error {
	if s.draining.Load() {
		return ErrDraining
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return ErrDraining
	}
	var (
		errs     []error
		profiles = map[string]*profileRef{}
		created  []*TLSProfile
		steps    []*step
	)
	// The policy first: a new engine is compiled only when the section
	// changed (an unchanged one keeps its rate-limit buckets as they are),
	// and it goes live with the rest of the version.
	eng, policyHash := s.policy.Load(), config.Hash(cfg.Policy)
	if eng == nil || policyHash != s.policyHash {
		var err error
		if eng, err = policy.Compile(cfg.Policy, policy.WithMetrics(s.m), policy.WithLogger(s.log.With("component", "policy")), policy.WithPrevious(eng)); err != nil {
			errs = append(errs, err)
		}
	}
	// The access log and the tracer: opened or built now when their
	// section changed, live at the commit.
	accessNext, accessChanged, err := s.accessLog.prepare(cfg.AccessLog, s.opts.Stdout, s.opts.Stderr)
	if err != nil {
		errs = append(errs, err)
	}
	tracerNext, tracerChanged, err := s.tracer.prepare(cfg.Tracing, s.opts.Version)
	if err != nil {
		errs = append(errs, err)
	}
	names := make([]string, 0, len(cfg.TLS))
	for name := range cfg.TLS {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pc := cfg.TLS[name]
		h := config.Hash(pc)
		if old, ok := s.profiles[name]; ok && old.hash == h {
			profiles[name] = old
			continue
		}
		p, err := LoadTLSProfile(name, pc, s.m, s.log)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		profiles[name] = &profileRef{p: p, hash: h}
		created = append(created, p)
	}

	for _, lr := range cfg.Listeners() {
		st := &step{ref: lr, l: s.boundAt(lr.Listen)}
		var prof *TLSProfile
		profHash := ""
		if lr.TLS != "" {
			pr, ok := profiles[lr.TLS]
			if !ok {
				continue // its load error is already listed
			}
			prof, profHash = pr.p, pr.hash
		}
		h := config.Hash([]any{lr.Kind, lr.Section, profHash})
		if st.l != nil {
			if cur := st.l.cur.Load(); cur.hash == h {
				steps = append(steps, st)
				continue
			}
		}
		build := s.opts.Builders[lr.Kind]
		if build == nil {
			errs = append(errs, fmt.Errorf("%s: this build has no %s listener", lr.Path, lr.Kind))
			continue
		}
		log := s.log.With("listener", lr.Name, "kind", string(lr.Kind))
		hd, err := build(Env{
			Name: lr.Name, Kind: lr.Kind, Logger: log, Metrics: s.m,
			ServerTLS: prof, Dialer: s.opts.Dialer, Config: cfg,
			RequestReload: s.RequestReload, Version: s.opts.Version,
			Policy: &s.policy, AccessLog: s.accessLog, Tracer: s.tracer,
		}, lr.Section)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", lr.Path, err))
			continue
		}
		st.handler = newHandlerRef(hd, lr.Name, lr.Kind, h, lr.MaxConnections, s.m, log)
		st.handler.tls = prof != nil
		if st.l == nil {
			ln, err := Listen(lr.Listen)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.listen: %w", lr.Path, err))
				hd.Close()
				continue
			}
			st.l, st.bound = newListener(ln, lr.Listen, log), true
		}
		steps = append(steps, st)
	}

	var admin *adminServer
	if len(errs) == 0 && cfg.Admin.Listen != "off" && (s.admin == nil || s.admin.addr != cfg.Admin.Listen) {
		a, err := newAdminServer(s, cfg.Admin.Listen)
		if err != nil {
			errs = append(errs, fmt.Errorf("admin.listen: %w", err))
		} else {
			admin = a
		}
	}

	if len(errs) > 0 {
		for _, st := range steps {
			if st.handler != nil {
				st.handler.cancel()
				st.handler.h.Close()
			}
			if st.bound {
				st.l.ln.Close()
			}
		}
		for _, p := range created {
			p.Close()
		}
		if accessChanged {
			accessNext.abandon()
		}
		if tracerChanged {
			tracerNext.abandon()
		}
		return errors.Join(errs...)
	}

	// Commit: nothing below can fail.
	drain := cfg.Shutdown.DrainTimeout
	if accessChanged {
		if old := s.accessLog.commit(accessNext); old != nil {
			// Handlers that still run may hold the old sink until they
			// drain: its file closes when they must be gone.
			time.AfterFunc(drain+time.Second, func() { old.Close() })
		}
	}
	if tracerChanged {
		if shutdown := s.tracer.commit(tracerNext); shutdown != nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := shutdown(ctx); err != nil {
					s.log.Warn("tracing: flushing the replaced exporter", "err", err)
				}
			}()
		}
	}
	s.refsMu.Lock()
	for _, st := range steps {
		if st.handler != nil {
			s.refs[st.handler] = struct{}{}
		}
	}
	s.refsMu.Unlock()
	next := map[string]*Listener{}
	for _, st := range steps {
		next[st.l.key] = st.l
		switch {
		case st.bound:
			st.l.cur.Store(st.handler)
			go st.l.serve()
			s.log.Info("listening", "listener", st.ref.Name, "kind", string(st.ref.Kind), "addr", st.l.Addr().String())
		case st.handler != nil:
			s.retire(st.l.swap(st.handler), drain)
			var keep []string
			for _, u := range st.ref.Upstreams() {
				keep = append(keep, u.AllAddresses()...)
			}
			s.m.ForgetUpstreams(st.ref.Name, keep)
			s.log.Info("listener reconfigured", "listener", st.ref.Name, "kind", string(st.ref.Kind))
		}
	}
	var removed []*handlerRef
	live := map[string]bool{}
	for _, st := range steps {
		live[st.ref.Name] = true
	}
	for addr, l := range s.listeners {
		if _, kept := next[addr]; !kept {
			l.stop()
			old := l.cur.Load()
			s.retire(old, drain)
			if !live[old.name] {
				removed = append(removed, old)
			}
			s.log.Info("listener removed", "listener", old.name, "addr", addr)
		}
	}
	for name, pr := range s.profiles {
		if profiles[name] != pr {
			pr.p.Close()
		}
	}
	s.state.Lock()
	defer s.state.Unlock()
	if cfg.Admin.Listen == "off" || admin != nil {
		if s.admin != nil {
			s.admin.close()
			s.admin = nil
		}
		if admin != nil {
			s.admin = admin
			go admin.serve()
			s.log.Info("admin listening", "addr", admin.ln.Addr().String())
		}
	}
	s.listeners = next
	s.profiles = profiles
	s.policy.Store(eng)
	s.policyHash = policyHash
	s.cfg.Store(cfg)
	s.m.ConfigHash.Reset()
	s.m.ConfigHash.WithLabelValues(config.Hash(cfg)).Set(1)
	for _, ref := range removed { // after the Store: they check the live config
		s.forgetAfterDrain(ref)
	}
	return nil
}

// boundAt finds the listener bound to a listen address, as configured or as
// bound (so "127.0.0.1:0" followed by the port it got is the same socket).
func (s *Server) boundAt(listen string) *Listener {
	if l := s.listeners[listen]; l != nil {
		return l
	}
	for _, l := range s.listeners {
		if l.network == "tcp" && l.Addr().String() == listen {
			return l
		}
	}
	return nil
}

// retire drains a replaced or removed handler in the background.
func (s *Server) retire(ref *handlerRef, timeout time.Duration) {
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ref.retire(ctx)
		s.refsMu.Lock()
		delete(s.refs, ref)
		s.refsMu.Unlock()
	}()
}

// forgetAfterDrain deletes a removed listener's metric series once its last
// connection is gone, unless a later config brought the name back.
func (s *Server) forgetAfterDrain(ref *handlerRef) {
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		<-ref.idle
		if cfg := s.cfg.Load(); cfg != nil {
			for _, l := range cfg.Listeners() {
				if l.Name == ref.name {
					return
				}
			}
		}
		s.m.ForgetListener(ref.name)
	}()
}

// RequestDrain asks the process to drain, as POST /drain does.
func (s *Server) RequestDrain() { s.drainOnce.Do(func() { close(s.drainReq) }) }

// Shutdown drains the whole process: /readyz turns 503, every listener stops
// accepting (new connections are refused), handlers are asked to wind down,
// open connections get up to shutdown.drain_timeout to finish and are then
// closed. It returns when all are gone; the admin server closes last.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Swap(true) {
		return
	}
	s.m.Draining.Set(1)
	timeout := 30 * time.Second
	if cfg := s.cfg.Load(); cfg != nil {
		timeout = cfg.Shutdown.DrainTimeout
	}
	s.log.Info("draining", "timeout", timeout.String())
	for _, l := range s.listeners {
		l.stop()
	}
	open := 0
	for _, l := range s.listeners {
		open += l.cur.Load().count()
		s.retire(l.cur.Load(), timeout)
	}
	s.log.Info("listeners closed; waiting for connections", "open", open)
	s.retiring.Wait()
	for _, pr := range s.profiles {
		pr.p.Close()
	}
	s.state.Lock()
	defer s.state.Unlock()
	s.listeners = map[string]*Listener{}
	s.profiles = map[string]*profileRef{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tracer.Shutdown(ctx); err != nil {
		s.log.Warn("tracing: flushing the last spans", "err", err)
	}
	s.accessLog.Close()
	if s.admin != nil {
		s.admin.close()
		s.admin = nil
	}
	s.log.Info("drained")
}
