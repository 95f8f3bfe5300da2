package sidecar

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// StatsReporter is implemented by handlers that have pools to show on /pools.
type StatsReporter interface {
	Stats() any
}

type adminServer struct {
	addr string
	ln   net.Listener
	srv  *http.Server
}

func newAdminServer(s *Server, addr string) (*adminServer, error) {
	ln, err := Listen(addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{Registry: s.m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case s.cfg.Load() == nil:
			http.Error(w, "no config loaded", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ready\n"))
		}
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.cfg.Load()) // config.Secret values marshal as "[redacted]"
	})
	mux.HandleFunc("GET /pools", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.poolStats())
	})
	mux.HandleFunc("GET /clients", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.clients())
	})
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		s.RequestDrain()
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("draining\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &adminServer{addr: addr, ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}}, nil
}

func (a *adminServer) serve() { a.srv.Serve(a.ln) }

func (a *adminServer) close() { a.srv.Close() }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// poolStats gathers StatsReporter output by listener name.
func (s *Server) poolStats() map[string]any {
	s.state.RLock()
	defer s.state.RUnlock()
	out := map[string]any{}
	for _, l := range s.listeners {
		ref := l.cur.Load()
		if sr, ok := ref.h.(StatsReporter); ok {
			out[ref.name] = sr.Stats()
		}
	}
	return out
}
