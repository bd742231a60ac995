package logging

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestErrorLinesCarryNoStackTrace logs an error and a warning through the binaries' logger configuration, into
// a file, and checks that no line has a stack trace.
func TestErrorLinesCarryNoStackTrace(t *testing.T) {
	cfg := config(zap.NewAtomicLevelAt(zap.InfoLevel))
	out := filepath.Join(t.TempDir(), "log.json")
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{out}, []string{out}
	log, err := cfg.Build()
	if err != nil {
		t.Fatal(err)
	}
	log.Error("store failed", zap.Error(errors.New("disk full")))
	log.Warn("upstream failed")
	_ = log.Sync()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if st, ok := line["stacktrace"]; ok {
			t.Errorf("%q line has a stack trace: %v", line["msg"], st)
		}
		if line["ts"] == nil || line["level"] == nil {
			t.Errorf("line %q lacks ts or level", sc.Text())
		}
	}
	if lines != 2 {
		t.Fatalf("%d lines logged, want 2", lines)
	}
}

func TestNewLevel(t *testing.T) {
	log, lvl, err := New("warn")
	if err != nil {
		t.Fatal(err)
	}
	if lvl.Level() != zapcore.WarnLevel || log.Core().Enabled(zapcore.InfoLevel) {
		t.Fatalf("level %v, info enabled %v", lvl.Level(), log.Core().Enabled(zapcore.InfoLevel))
	}
	lvl.SetLevel(zapcore.DebugLevel)
	if !log.Core().Enabled(zapcore.DebugLevel) {
		t.Fatal("SetLevel(debug) did not reach the logger")
	}
	if _, _, err := New("loud"); err == nil {
		t.Fatal("New(loud) succeeded")
	}
}

func TestLevelHandler(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(zapcore.InfoLevel)
	h := LevelHandler(lvl, zap.New(core))
	tests := []struct {
		name, method, target, remote, body string
		status                             int
		want                               zapcore.Level
	}{
		{"get", http.MethodGet, "/logging", "203.0.113.9:4000", "", http.StatusOK, zapcore.InfoLevel},
		{"put query", http.MethodPut, "/logging?level=debug", "127.0.0.1:4000", "", http.StatusOK, zapcore.DebugLevel},
		{"post form", http.MethodPost, "/logging", "[::1]:4000", "level=warn", http.StatusOK, zapcore.WarnLevel},
		{"mapped loopback", http.MethodPut, "/logging?level=error", "[::ffff:127.0.0.1]:4000", "", http.StatusOK, zapcore.ErrorLevel},
		{"off-host peer", http.MethodPut, "/logging?level=debug", "203.0.113.9:4000", "", http.StatusForbidden, zapcore.ErrorLevel},
		{"unix peer", http.MethodPut, "/logging?level=debug", "@", "", http.StatusForbidden, zapcore.ErrorLevel},
		{"bad level", http.MethodPut, "/logging?level=loud", "127.0.0.1:4000", "", http.StatusBadRequest, zapcore.ErrorLevel},
		{"no level", http.MethodPut, "/logging", "127.0.0.1:4000", "", http.StatusBadRequest, zapcore.ErrorLevel},
		{"delete", http.MethodDelete, "/logging?level=debug", "127.0.0.1:4000", "", http.StatusMethodNotAllowed, zapcore.ErrorLevel},
		{"get after", http.MethodGet, "/logging?level=debug", "127.0.0.1:4000", "", http.StatusOK, zapcore.ErrorLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.target, body)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			req.RemoteAddr = tt.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if lvl.Level() != tt.want {
				t.Fatalf("level %v, want %v", lvl.Level(), tt.want)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if tt.status == http.StatusOK && got["level"] != tt.want.String() {
				t.Fatalf("body %v, want level %v", got, tt.want)
			}
		})
	}
	if n := logs.FilterMessage("log level changed").Len(); n != 3 {
		t.Fatalf("%d changes logged, want 3", n)
	}
}

// TestLevelHandlerOverTCP checks the peer address a real server sees: a change from 127.0.0.1 is accepted.
func TestLevelHandlerOverTCP(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: LevelHandler(lvl, zap.NewNop())}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	req, _ := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/logging?level=debug", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || lvl.Level() != zapcore.DebugLevel {
		t.Fatalf("status %d, level %v", res.StatusCode, lvl.Level())
	}
}
