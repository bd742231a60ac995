package controller

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

// startSWTPM runs a software TPM on a Unix socket in a temporary directory; without swtpm the test is skipped,
// except under CI=true.
func startSWTPM(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm is not installed (Debian package swtpm); CI must install it")
		}
		t.Skip("swtpm is not installed (Debian package swtpm)")
	}
	dir, err := os.MkdirTemp("", "swtpm") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"), "--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("swtpm did not open its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testConfig(t *testing.T, extra string) *Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := Parse([]byte(fmt.Sprintf(`trustDomain: example.org
dataDir: %s
issuer: {listen: 127.0.0.1:0%s}
xds: {listen: 127.0.0.1:0}
admin: {socket: %s}
ops: {listen: 127.0.0.1:0}
`, filepath.Join(dir, "data"), extra, filepath.Join(dir, "admin.sock"))))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestControllerKeysInTPM: with issuer.keys tpm the CA key lives in the TPM; a restart finds the same CA.
func TestControllerKeysInTPM(t *testing.T) {
	sock := startSWTPM(t)
	cfg := testConfig(t, ", keys: tpm, tpmDevice: "+sock)
	ctx := context.Background()
	c, err := New(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	root := c.ca.Root()
	c.close()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "keys", "tpm")); err != nil {
		t.Fatalf("no TPM key blobs on disk: %v", err)
	}
	c2, err := New(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("restart with the TPM-held CA key: %v", err)
	}
	defer c2.close()
	if !c2.ca.Root().Equal(root) {
		t.Fatal("the CA changed across a restart")
	}
}

// TestControllerRefusesSecondInstance: two controllers on one data directory cannot both run.
func TestControllerRefusesSecondInstance(t *testing.T) {
	cfg := testConfig(t, "")
	c, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := New(context.Background(), cfg, zap.NewNop()); err == nil {
		t.Fatal("a second controller opened the same data directory")
	}
}
