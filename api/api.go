// Package api serves sidelog's HTTP API on api.address:
//
//	/metrics          Prometheus exposition of the agent's registry
//	/healthz          200 while the process lives
//	/readyz           200 once the config is loaded and the buffers are open
//	/status           JSON: every input and output, each output's state
//
// and, only on the admin listener (api.admin: a loopback port or a unix
// socket, off by default, optionally behind a bearer token):
//
//	/tap              NDJSON stream of the records passing a point (api.tap)
//	/debug/pprof/...  Go profiling (api.pprof)
//	POST /-/reload    reload the config (as SIGHUP does)
//	POST /dead-letter/replay?output=NAME  send an output's dead letters again
//
// The metrics address never serves the tap or pprof: behind a service mesh
// every inbound connection comes from a loopback address, so a loopback
// check there protects nothing. No endpoint shows a config value.
package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
	// Tap and Pprof are api.tap and api.pprof: served on the admin
	// listener only.
	Tap, Pprof bool
	// Admin is api.admin (off when empty).
	Admin Admin
	// Reload reloads the config for POST /-/reload on the admin listener;
	// its error is the reason a reload was refused. nil: not available.
	Reload func(context.Context) error
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
// harmless). Reconfigure applies a reloaded api block without a restart.
type Server struct {
	opts    Options
	handler http.Handler
	admin   http.Handler

	mu   sync.Mutex
	cur  atomic.Pointer[Server] // the handlers of the current options
	main *listener
	adm  *listener
	old  sync.WaitGroup // listeners being shut down after a Reconfigure

	base     context.Context
	stopBase context.CancelFunc
	once     sync.Once
}

// listener is one bound address and its HTTP server.
type listener struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// New builds the server; it does not listen yet.
func New(opts Options) *Server {
	base, stop := context.WithCancel(context.Background())
	s := &Server{base: base, stopBase: stop}
	s.setOptions(opts)
	return s
}

func (s *Server) setOptions(opts Options) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.NewRegistry()
	}
	v := &Server{opts: opts}
	v.handler = v.routes()
	v.admin = v.adminRoutes()
	s.opts, s.handler, s.admin = opts, v.handler, v.admin
	s.cur.Store(v)
}

// Handler returns the API's handler (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler returns the admin listener's handler (token check included).
func (s *Server) AdminHandler() http.Handler { return s.admin }

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
	adminOnly := func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusNotFound, "not served here: /tap, /debug/pprof/, /-/reload and /dead-letter/replay are served only on the admin listener (api.admin: address 127.0.0.1:PORT or socket PATH; see docs/operations.md)")
	}
	mux.HandleFunc("/dead-letter/replay", adminOnly)
	mux.HandleFunc("/tap", adminOnly)
	mux.HandleFunc("/debug/pprof/", adminOnly)
	mux.HandleFunc("/-/reload", adminOnly)
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

// Start binds Address and the admin listener and serves in the
// background. It returns the bind error, if any (nothing is left listening
// then); with an empty Address and no admin listener it does nothing. ctx
// bounds only the bind: the server keeps serving (probes, metrics) during
// the agent's graceful shutdown, until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	main, adm, err := s.bind(ctx, s.opts, nil)
	if err != nil {
		return err
	}
	s.main, s.adm = s.serve(main, false), s.serve(adm, true)
	return nil
}

// bind opens the listeners that opts needs and that old (possibly nil)
// does not already provide; on error it closes what it opened.
func (s *Server) bind(ctx context.Context, opts Options, old *Options) (main, adm net.Listener, err error) {
	if opts.Address != "" && (old == nil || old.Address != opts.Address) {
		var lc net.ListenConfig
		if main, err = lc.Listen(ctx, "tcp", opts.Address); err != nil {
			return nil, nil, fmt.Errorf("api: listen on %s: %w", opts.Address, err)
		}
	}
	sameAdmin := old != nil && old.Admin.Address == opts.Admin.Address && old.Admin.Socket == opts.Admin.Socket
	if opts.Admin.Enabled() && !sameAdmin {
		if adm, err = listenAdmin(ctx, opts.Admin); err != nil {
			if main != nil {
				main.Close()
			}
			return nil, nil, err
		}
	} else if opts.Admin.TokenFile != "" {
		if _, err = readToken(opts.Admin.TokenFile); err != nil {
			if main != nil {
				main.Close()
			}
			return nil, nil, fmt.Errorf("api.admin.token_file: %w", err)
		}
	}
	return main, adm, nil
}

// serve serves ln (nil: nothing) with the current handlers.
func (s *Server) serve(ln net.Listener, admin bool) *listener {
	if ln == nil {
		return nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if admin {
			s.cur.Load().admin.ServeHTTP(w, r)
		} else {
			s.cur.Load().handler.ServeHTTP(w, r)
		}
	})
	l := &listener{ln: ln, srv: s.newHTTPServer(h), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("api server stopped", "error", err.Error(), "address", ln.Addr().String())
		}
	}()
	return l
}

// Reconfigure applies a reloaded api block: the new addresses are bound
// first (an error leaves everything as it was), then the handlers switch
// (api.tap, api.pprof, the token file) and the replaced listeners are shut
// down in the background, so that a POST /-/reload that triggered it gets
// its answer. Only Address, Tap, Pprof and Admin are taken from opts.
func (s *Server) Reconfigure(ctx context.Context, opts Options) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.opts
	next := old
	next.Address, next.Tap, next.Pprof, next.Admin = opts.Address, opts.Tap, opts.Pprof, opts.Admin
	main, adm, err := s.bind(ctx, next, &old)
	if err != nil {
		return err
	}
	s.setOptions(next)
	if next.Address != old.Address {
		s.retire(s.main)
		s.main = s.serve(main, false)
	}
	if next.Admin.Address != old.Admin.Address || next.Admin.Socket != old.Admin.Socket {
		s.retire(s.adm)
		s.adm = s.serve(adm, true)
	}
	return nil
}

// retire shuts l down in the background (in-flight requests get 5s).
func (s *Server) retire(l *listener) {
	if l == nil {
		return
	}
	s.old.Add(1)
	go func() {
		defer s.old.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if l.srv.Shutdown(ctx) != nil {
			l.srv.Close()
		}
		<-l.done
	}()
}

// Addr is the address the server listens on ("" when off or not started):
// the real port when Address ends in ":0".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.main == nil {
		return ""
	}
	return s.main.ln.Addr().String()
}

// AdminAddr is the admin listener's address ("" when off): the real port
// when Admin.Address ends in ":0", the socket path for a socket.
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adm == nil {
		return ""
	}
	return s.adm.ln.Addr().String()
}

// Shutdown stops listening, ends tap streams, and waits for requests in
// progress until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.stopBase() // ends long-lived streams (tap)
		s.mu.Lock()
		ls := []*listener{s.main, s.adm}
		s.mu.Unlock()
		for _, l := range ls {
			if l == nil {
				continue
			}
			if e := l.srv.Shutdown(ctx); e != nil {
				l.srv.Close()
				err = cmp.Or(err, e)
			}
			select {
			case <-l.done:
			case <-ctx.Done():
				err = cmp.Or(err, ctx.Err())
			}
		}
		s.old.Wait()
	})
	return err
}

func slogLogger(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) { a.l.Warn("metrics: " + fmt.Sprint(v...)) }
