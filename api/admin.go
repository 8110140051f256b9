package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"
)

// Admin is api.admin: the listener that serves the endpoints that show
// records or change the agent (/tap, /debug/pprof/, POST /-/reload). It is
// off unless Address or Socket is set, and is never the metrics address:
// a service mesh (Istio, Linkerd) delivers inbound connections from
// 127.0.0.1 or 127.0.0.6, so a loopback check on a 0.0.0.0 listener
// protects nothing.
type Admin struct {
	// Address is a loopback host:port ("127.0.0.1:2021"); any other host
	// needs TokenFile.
	Address string
	// Socket is a unix socket path, created 0600 (only the agent's user and
	// root can connect).
	Socket string
	// TokenFile, when set, holds a bearer token that every admin request
	// must send (Authorization: Bearer TOKEN). It is read on each request,
	// so a rotated Secret applies without a restart.
	TokenFile string
}

// Enabled reports whether the admin listener is on.
func (a Admin) Enabled() bool { return a.Address != "" || a.Socket != "" }

// adminRoutes are the admin listener's endpoints.
func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	if s.opts.Tap {
		mux.HandleFunc("GET /tap", s.serveTap)
	} else {
		mux.HandleFunc("GET /tap", func(w http.ResponseWriter, r *http.Request) {
			text(w, http.StatusNotFound, "the tap endpoint is disabled: set api.tap: true in the config")
		})
	}
	if s.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Reload == nil {
			text(w, http.StatusServiceUnavailable, "reload is not available in this mode")
			return
		}
		if err := s.opts.Reload(r.Context()); err != nil {
			text(w, http.StatusConflict, "config reload refused, the old config keeps running: "+err.Error())
			return
		}
		text(w, http.StatusOK, "config reloaded")
	})
	mux.HandleFunc("POST /dead-letter/replay", s.serveReplay)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/-/reload" || r.URL.Path == "/dead-letter/replay" {
			w.Header().Set("Allow", "POST")
			text(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
			return
		}
		text(w, http.StatusNotFound, "not found: the admin listener serves /tap, /debug/pprof/, POST /-/reload and POST /dead-letter/replay")
	})
	if s.opts.Admin.TokenFile == "" {
		return mux
	}
	return s.bearer(mux)
}

// bearer lets a request through only with the token of Admin.TokenFile.
func (s *Server) bearer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want, err := readToken(s.opts.Admin.TokenFile)
		if err != nil {
			s.opts.Logger.Error("admin request refused: cannot read api.admin.token_file", "error", err.Error())
			text(w, http.StatusServiceUnavailable, "the agent cannot read its admin token file")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sidelog admin"`)
			text(w, http.StatusUnauthorized, "unauthorized: send Authorization: Bearer <the token of api.admin.token_file> (sidelog tap --token-file)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readToken reads a token file; an empty token is an error (it would let
// every request in).
func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := []byte(strings.TrimSpace(string(b)))
	if len(t) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return t, nil
}

// listenAdmin binds the admin listener: a unix socket made 0600 (a stale
// socket file left by a killed agent is removed first) or a TCP address.
func listenAdmin(ctx context.Context, a Admin) (net.Listener, error) {
	if a.TokenFile != "" {
		if _, err := readToken(a.TokenFile); err != nil {
			return nil, fmt.Errorf("api.admin.token_file: %w", err)
		}
	}
	var lc net.ListenConfig
	if a.Address != "" {
		ln, err := lc.Listen(ctx, "tcp", a.Address)
		if err != nil {
			return nil, fmt.Errorf("api.admin: listen on %s: %w", a.Address, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(a.Socket); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("api.admin.socket %s exists and is not a socket", a.Socket)
		}
		os.Remove(a.Socket)
	}
	ln, err := lc.Listen(ctx, "unix", a.Socket)
	if err != nil {
		return nil, fmt.Errorf("api.admin: listen on %s: %w", a.Socket, err)
	}
	if err := os.Chmod(a.Socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api.admin.socket: %w", err)
	}
	return ln, nil
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slogLogger(s.opts.Logger),
	}
}

// serveReplay sends an output's dead letters again (POST
// /dead-letter/replay?output=NAME, asked by `sidelog dead-letter replay`
// while the agent runs). Admin listener only: it makes the agent send.
func (s *Server) serveReplay(w http.ResponseWriter, r *http.Request) {
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
}
