package controller

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestDataDirMustBePrivate: the controller does not start on a data directory another local user could have
// planted files in or could change (they could plant a state.db holding their own join token, or swap keys);
// the error names the path and what to fix.
func TestDataDirMustBePrivate(t *testing.T) {
	const nobody = 65534
	tests := []struct {
		name    string
		prepare func(t *testing.T, dataDir string) (path string) // returns the path the error must name
		fix     string                                           // what the error must say to do
	}{
		{"private", func(*testing.T, string) string { return "" }, ""},
		{"dataDir writable by others", func(t *testing.T, d string) string {
			mustChmod(t, d, 0o777)
			return d
		}, "chmod go-w"},
		{"dataDir writable by the group", func(t *testing.T, d string) string {
			mustChmod(t, d, 0o770)
			return d
		}, "chmod go-w"},
		{"keys writable by others", func(t *testing.T, d string) string {
			mustMkdir(t, filepath.Join(d, "keys"), 0o777)
			return filepath.Join(d, "keys")
		}, "chmod go-w"},
		{"state.db writable by the group", func(t *testing.T, d string) string {
			p := filepath.Join(d, "state.db")
			mustWrite(t, p, 0o660)
			return p
		}, "chmod go-w"},
		{"state.db a symbolic link", func(t *testing.T, d string) string {
			p := filepath.Join(d, "state.db")
			if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere.db"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "symbolic link"},
		{"state.db owned by another user", func(t *testing.T, d string) string {
			if os.Geteuid() != 0 {
				t.Skip("changing a file's owner needs root")
			}
			p := filepath.Join(d, "state.db")
			mustWrite(t, p, 0o600)
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			mustMkdir(t, cfg.DataDir, 0o700)
			path := tt.prepare(t, cfg.DataDir)
			c, err := New(context.Background(), cfg, zap.NewNop())
			if path == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.close()
				return
			}
			if err == nil {
				c.close()
				t.Fatalf("New accepted a data directory where %s is not private", path)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.fix) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, path, tt.fix)
			}
		})
	}
}

// TestBundleWriteFollowsNoPlantedLink: bundle.pem is written through a new file of its own, so links planted in
// dataDir (at the temporary name the controller once used, or anywhere) make it overwrite nothing elsewhere.
func TestBundleWriteFollowsNoPlantedLink(t *testing.T) {
	cfg := testConfig(t, "")
	mustMkdir(t, cfg.DataDir, 0o700)
	victim := filepath.Join(t.TempDir(), "precious.conf")
	mustWrite(t, victim, 0o600)
	if err := os.Symlink(victim, filepath.Join(cfg.DataDir, "bundle.pem.tmp")); err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
		t.Fatalf("writing the bundle overwrote %s, outside dataDir, with %q", victim, got)
	}
	fi, err := os.Lstat(filepath.Join(cfg.DataDir, "bundle.pem"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("bundle.pem: %v, %v; want a regular file of mode 0644", fi, err)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.DataDir, ".bundle-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, mode); err != nil {
		t.Fatal(err)
	}
	mustChmod(t, path, mode) // whatever the umask
}

func mustWrite(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("precious\n"), mode); err != nil {
		t.Fatal(err)
	}
	mustChmod(t, path, mode)
}
