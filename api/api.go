// Package api serves sidelog's HTTP API on api.address:
//
//	/metrics          Prometheus exposition of the agent's registry
//	/healthz          200 while the process lives
//	/readyz           200 once the config is loaded and the buffers are open
//	/status           JSON: every input and output, each output's state
//	/dead-letter/replay  POST ?output=NAME: send the dead letters again (loopback)
//	/tap              NDJSON stream of the records passing a point (api.tap)
//	/debug/pprof/...  Go profiling (api.pprof)
//
// The tap and pprof endpoints are off unless enabled, and even then answer
// only loopback clients: reach them with `kubectl exec` or `kubectl
// port-forward`. No endpoint shows a config value.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sidelog/sidelog/api/tap"
)

// Options configure the server. Every func may be called concurrently from
// request goroutines; the engine usually passes closures over the current
// pipeline so that a reload needs no new server.
type Options struct {
	// Address is api.address ("127.0.0.1:2020", "0.0.0.0:2020", ":0" in
	// tests). Empty: the API is off and Start does nothing.
	Address string
	// Tap and Pprof are api.tap and api.pprof.
	Tap, Pprof bool
	// Gatherer is the registry /metrics exposes (nil: an empty one).
	Gatherer prometheus.Gatherer
	// Ready reports readiness: the config is loaded and every buffer is
	// open. It must not depend on the outputs' health. nil: not ready.
	Ready func() bool
	// Status returns what /status shows, marshalled as JSON (typically
	// metrics.Metrics.Snapshot()). nil: {}.
	Status func() any
	// Hub is the tap hub the pipeline publishes to (needed with Tap).
	Hub *tap.Hub
	// TapBuffer is the per-client channel capacity (default 1024 records).
	TapBuffer int
	// Logger receives the server's own errors (nil: discarded).
	Logger *slog.Logger
	// Replay sends an output's dead-lettered records again (POST
	// /dead-letter/replay?output=NAME, loopback clients only; what
	// `sidelog dead-letter replay` asks a running agent). nil: 404.
	Replay func(ctx context.Context, output string) (int, error)
}

// Server is the HTTP API. Start it once; Shutdown it once (more calls are
// harmless).
type Server struct {
	opts    Options
	handler http.Handler
	srv     *http.Server
	ln      net.Listener

	base     context.Context
	stopBase context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// New builds the server; it does not listen yet.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.NewRegistry()
	}
	base, stop := context.WithCancel(context.Background())
	s := &Server{opts: opts, base: base, stopBase: stop, done: make(chan struct{})}
	s.handler = s.routes()
	return s
}

// Handler returns the API's handler (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog:          slogAdapter{s.opts.Logger},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Ready != nil && s.opts.Ready() {
			text(w, http.StatusOK, "ready")
			return
		}
		text(w, http.StatusServiceUnavailable, "not ready: the config is not loaded or a buffer is not open yet")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		var v any = struct{}{}
		if s.opts.Status != nil {
			v = s.opts.Status()
		}
		body, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			s.opts.Logger.Error("cannot encode /status", "error", err.Error())
			text(w, http.StatusInternalServerError, "cannot encode the status")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(body, '\n'))
	})
	mux.Handle("POST /dead-letter/replay", loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("output")
		if s.opts.Replay == nil {
			text(w, http.StatusNotFound, "dead-letter replay is not available in this agent")
			return
		}
		if name == "" {
			text(w, http.StatusBadRequest, "output: required (?output=NAME)")
			return
		}
		n, err := s.opts.Replay(r.Context(), name)
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"output": name, "replayed": n}
		code := http.StatusOK
		if err != nil {
			body["error"] = err.Error()
			code = http.StatusConflict
		}
		b, _ := json.Marshal(body)
		w.WriteHeader(code)
		w.Write(append(b, '\n'))
	})))
	if s.opts.Tap {
		mux.Handle("GET /tap", loopbackOnly(http.HandlerFunc(s.serveTap)))
	} else {
		mux.HandleFunc("GET /tap", func(w http.ResponseWriter, r *http.Request) {
			text(w, http.StatusNotFound, "the tap endpoint is disabled: set api.tap: true in the config")
		})
	}
	if s.opts.Pprof {
		pp := http.NewServeMux()
		pp.HandleFunc("/debug/pprof/", pprof.Index)
		pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", loopbackOnly(pp))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz", "/status", "/tap":
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
			return
		}
		text(w, http.StatusNotFound, "not found: try /metrics, /healthz, /readyz, /status")
	})
	return mux
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// loopbackOnly refuses clients that do not connect from a loopback address.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			text(w, http.StatusForbidden, "forbidden: this endpoint answers loopback clients only (use kubectl exec or kubectl port-forward)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Start binds Address and serves in the background. It returns the bind
// error, if any; with an empty Address it does nothing. ctx bounds only the
// bind: the server keeps serving (probes, metrics) during the agent's
// graceful shutdown, until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	if s.opts.Address == "" {
		close(s.done)
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		close(s.done)
		return fmt.Errorf("api: listen on %s: %w", s.opts.Address, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("api server stopped", "error", err.Error())
		}
	}()
	return nil
}

// Addr is the address the server listens on ("" when off or not started):
// the real port when Address ends in ":0".
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops listening, ends tap streams, and waits for requests in
// progress until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.stopBase() // ends long-lived streams (tap)
		if s.srv != nil {
			err = s.srv.Shutdown(ctx)
			if err != nil {
				s.srv.Close()
			}
		}
	})
	select {
	case <-s.done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) { a.l.Warn("metrics: " + fmt.Sprint(v...)) }
