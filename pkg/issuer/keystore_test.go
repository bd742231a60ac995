package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func signAndVerify(t *testing.T, k crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte("agentauth key store test"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("public key is %T, want ECDSA", k.Public())
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("signature does not verify with the key's public half")
	}
}

func TestFileKeyStoreCreatesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ks, err := NewFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := ks.Signer("ca")
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, k1)

	for path, want := range map[string]os.FileMode{dir: 0o700, ks.Path("ca"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}

	ks2, err := NewFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ks2.Signer("ca")
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Error("reopened store returned a different key")
	}
	other, err := ks2.Signer("wit")
	if err != nil {
		t.Fatal(err)
	}
	if k1.Public().(*ecdsa.PublicKey).Equal(other.Public()) {
		t.Error("two names share one key")
	}
}

func TestFileKeyStoreConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	pubs := make([]crypto.PublicKey, 8)
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ks, err := NewFileKeyStore(dir) // separate stores, like separate processes
			if err != nil {
				t.Error(err)
				return
			}
			k, err := ks.Signer("ca")
			if err != nil {
				t.Error(err)
				return
			}
			pubs[i] = k.Public()
		}()
	}
	wg.Wait()
	for i, p := range pubs {
		if p == nil || !pubs[0].(*ecdsa.PublicKey).Equal(p) {
			t.Fatalf("store %d got a different key: concurrent creators overwrote each other", i)
		}
	}
}

func TestFileKeyStoreRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		key     string
		wantErr string
	}{
		{"group readable key", func(t *testing.T, dir string) { writeKeyFile(t, dir, "ca", 0o640) }, "ca", "group or others may access"},
		{"world readable key", func(t *testing.T, dir string) { writeKeyFile(t, dir, "ca", 0o604) }, "ca", "group or others may access"},
		{"symlinked key", func(t *testing.T, dir string) {
			writeKeyFile(t, dir, "real", 0o600)
			if err := os.Symlink(filepath.Join(dir, "real.key"), filepath.Join(dir, "ca.key")); err != nil {
				t.Fatal(err)
			}
		}, "ca", "not a regular file"},
		{"garbage key", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("not pem"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "ca", "no PKCS#8"},
		{"path in name", func(*testing.T, string) {}, "../etc/passwd", "must match"},
		{"empty name", func(*testing.T, string) {}, "", "must match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ks, err := NewFileKeyStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			_, err = ks.Signer(tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Signer(%q) = %v, want an error containing %q", tt.key, err, tt.wantErr)
			}
		})
	}
}

func TestFileKeyStoreRefusesWritableDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileKeyStore(dir); err == nil || !strings.Contains(err.Error(), "may write to it") {
		t.Fatalf("NewFileKeyStore on a 0777 directory = %v, want a refusal", err)
	}
}

// writeKeyFile puts a valid key file for name in dir with mode perm.
func writeKeyFile(t *testing.T, dir, name string, perm os.FileMode) {
	t.Helper()
	src, err := NewFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Signer(name); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".key")
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // WriteFile's mode is filtered by the umask
		t.Fatal(err)
	}
}
