package controller

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Before, a missing or empty state.db beside existing CA keys started the controller with empty state.
func TestMissingStateBesideKeysRefusesToStart(t *testing.T) {
	cfg := testConfig(t, "")
	c, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c.close()
	state := filepath.Join(cfg.DataDir, "state.db")
	for _, damage := range []func() error{
		func() error { return os.Remove(state) },
		func() error { return os.WriteFile(state, nil, 0o600) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		if _, err := New(context.Background(), cfg, zap.NewNop()); !errors.Is(err, ErrStateMissing) {
			t.Fatalf("New: %v, want ErrStateMissing", err)
		}
	}
	cfg.InitState = true
	c, err = New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("with InitState: %v", err)
	}
	c.close()
}

// Before, damage that appeared under a serving controller panicked in the hourly housekeeping; now Run stops
// with ErrStateCorrupt.
func TestStoreDamagedWhileServingStopsRun(t *testing.T) {
	cfg := testConfig(t, "")
	c, err := New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	waitReady(t, c, http.StatusOK)

	// Every page but the two meta pages zeroed, under bbolt's memory map.
	path := filepath.Join(cfg.DataDir, "state.db")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(os.Getpagesize())
	if _, err := f.WriteAt(make([]byte, fi.Size()-2*ps), 2*ps); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.prune(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, ErrStateCorrupt) {
			t.Fatalf("Run: %v, want ErrStateCorrupt", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not stop on a damaged store")
	}
}

// Before, /readyz answered 200 while the data directory could not be written, because reading the store works
// from bbolt's memory map.
func TestReadyzReportsUnwritableDataDir(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string) (undo func())
	}{
		{"data directory gone", func(t *testing.T, dir string) func() {
			if err := os.Rename(dir, dir+".moved"); err != nil {
				t.Fatal(err)
			}
			return func() { _ = os.Rename(dir+".moved", dir) }
		}},
		{"data directory read-only", func(t *testing.T, dir string) func() {
			if os.Geteuid() == 0 {
				t.Skip("root writes to read-only directories")
			}
			mustChmod(t, dir, 0o500)
			return func() { mustChmod(t, dir, 0o700) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			c, stop := runController(t, cfg)
			waitReady(t, c, http.StatusOK)
			undo := tt.break_(t, cfg.DataDir)
			body := waitReady(t, c, http.StatusServiceUnavailable)
			if !strings.Contains(body, "dataDir") {
				t.Fatalf("readyz body %q does not name dataDir", body)
			}
			undo()
			waitReady(t, c, http.StatusOK)
			stop()
		})
	}
}

// waitReady polls /readyz until it answers want, and returns the body.
func waitReady(t *testing.T, c *Controller, want int) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + c.opsLn().Addr().String() + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return string(b)
		}
		last = resp.Status + " " + string(b)
	}
	t.Fatalf("/readyz never answered %d; last: %s", want, last)
	return ""
}

// TestReadyzWaitsForCustomResources: until the CedarPolicy objects are listed the live set is whatever the state
// held, and until the SSFTransmitter objects are, their transmitters are not trusted; /readyz says so while they
// cannot be listed (no API server here: a closed port).
func TestReadyzWaitsForCustomResources(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["gone"] = &clientcmdapi.Cluster{Server: "https://" + addr}
	kc.AuthInfos["gone"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "gone"}
	kc.CurrentContext = "gone"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		config     func() *Config
	}{
		{"policy.source crd", "CedarPolicy objects not listed yet", func() *Config {
			cfg := testConfig(t, "")
			cfg.Policy = PolicyConfig{Source: PolicySourceCRD, Kubeconfig: path}
			return cfg
		}},
		{"ssf.transmitterObjects", "SSFTransmitter objects not listed yet", func() *Config {
			return ssfConfig(t, "ssf: {listen: 127.0.0.1:0, transmitterObjects: {namespace: agentauth, kubeconfig: "+path+"}}\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, stop := runController(t, tt.config())
			body := waitReady(t, c, http.StatusServiceUnavailable)
			if !strings.Contains(body, tt.want) {
				t.Fatalf("readyz body %q does not say %q", body, tt.want)
			}
			stop()
		})
	}
}
