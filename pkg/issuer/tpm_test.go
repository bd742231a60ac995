package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// startSWTPM runs a software TPM (swtpm, Debian package "swtpm") on unix sockets in a temporary directory and
// returns a transport to it. Without swtpm the test is skipped, except under CI=true where it fails.
func startSWTPM(t *testing.T) transport.TPM {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm is not installed (Debian package swtpm); CI must install it")
		}
		t.Skip("swtpm is not installed (Debian package swtpm)")
	}
	dir, err := os.MkdirTemp("", "swtpm") // short path: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var conn net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not open %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { conn.Close() })
	return &streamTPM{conn: conn}
}

// streamTPM sends raw TPM 2.0 commands over a stream socket, reading each response by its header's size field.
type streamTPM struct{ conn net.Conn }

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10) // tag (2), responseSize (4), responseCode (4)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<16 {
		return nil, fmt.Errorf("TPM response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	_, err := io.ReadFull(s.conn, rsp[10:])
	return rsp, err
}

func TestTPMKeyStore(t *testing.T) {
	tpm := startSWTPM(t)
	dir := t.TempDir()
	ks, err := NewTPMKeyStore(tpm, dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ks.Signer("ca")
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, k)

	// SHA-384 digests are signed too (the key's scheme is chosen per signature).
	d384 := sha512.Sum384([]byte("x"))
	sig, err := k.Sign(rand.Reader, d384[:], crypto.SHA384)
	if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d384[:], sig) {
		t.Fatalf("SHA-384 signature: err=%v", err)
	}
	if _, err := k.Sign(rand.Reader, d384[:], crypto.SHA256); err == nil {
		t.Error("a 48-byte digest labelled SHA-256 was signed")
	}

	fi, err := os.Stat(ks.Path("ca"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("blob mode %v, want 0600", fi.Mode().Perm())
	}

	// More keys than the TPM has transient slots still work: keys are loaded per signature.
	for i := range 5 {
		k, err := ks.Signer(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		signAndVerify(t, k)
	}
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, d384[:], crypto.SHA384); err == nil {
		t.Error("Sign after Close succeeded")
	}

	// A new store on the same TPM loads the blob and signs with the same key.
	ks2, err := NewTPMKeyStore(tpm, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	k2, err := ks2.Signer("ca")
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("reloaded TPM key has a different public key")
	}
	signAndVerify(t, k2)

	// A tampered blob is refused with a clear error, not used.
	if err := os.WriteFile(ks2.Path("bad"), []byte("-----BEGIN TPM2B PUBLIC-----\nAAA=\n-----END TPM2B PUBLIC-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ks2.Signer("bad"); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tampered blob: err = %v, want a refusal", err)
	}
}
