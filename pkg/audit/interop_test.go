package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentauth/agentauth/internal/testca"
)

func hx(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The RFC 6962 reference vectors (certificate-transparency's merkle tree tests): eight leaves, the root of every
// prefix, and the inclusion path of leaf 0 in the tree of 8.
func TestRFC6962Vectors(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	tree := rangeFactory.NewEmptyRange(0)
	var hashes [][]byte
	for i := 0; ; i++ {
		root, err := rootOf(tree)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(root, hx(t, roots[i])) {
			t.Fatalf("root of %d leaves: %x, want %s", i, root, roots[i])
		}
		if i == len(leaves) {
			break
		}
		h := LeafHash(hx(t, leaves[i]))
		hashes = append(hashes, h)
		if err := tree.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	path, err := inclusionHashes(hashes, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}
	if len(path) != len(want) {
		t.Fatalf("path of %d hashes, want %d", len(path), len(want))
	}
	for i := range want {
		if !bytes.Equal(path[i], hx(t, want[i])) {
			t.Fatalf("path[%d] = %x, want %s", i, path[i], want[i])
		}
	}
}

// A checkpoint the writer signed opens with note's own verifier built from the published key text alone, its key ID
// is the one the signed-note spec gives for Ed25519, and its body is exactly the tlog-checkpoint text.
func TestCheckpointInterop(t *testing.T) {
	dir := t.TempDir()
	s, v := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s})
	appendN(t, w, 7, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, v)
	if err != nil {
		t.Fatal(err)
	}
	notes := readNotes(t, dir)
	vkey := VerifierKey(v)
	indep, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(notes[0], note.VerifierList(indep))
	if err != nil {
		t.Fatal(err)
	}
	// signed-note: key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4].
	parts := strings.SplitN(vkey, "+", 3)
	keyData, _ := base64.StdEncoding.DecodeString(parts[2])
	if keyData[0] != 1 || len(keyData) != 1+ed25519.PublicKeySize {
		t.Fatalf("verifier key data %x: want 0x01 || Ed25519 key", keyData)
	}
	sum := sha256.Sum256(append([]byte(testOrigin+"\n"), keyData...))
	if id := binary.BigEndian.Uint32(sum[:4]); n.Sigs[0].Hash != id || parts[1] != hex.EncodeToString(sum[:4]) {
		t.Fatalf("key ID %08x (%s), spec gives %08x", n.Sigs[0].Hash, parts[1], id)
	}
	// tlog-checkpoint: origin, decimal size without leading zeroes, base64 root; no extension lines.
	want := testOrigin + "\n" + strconv.FormatUint(rep.Records, 10) + "\n" + base64.StdEncoding.EncodeToString(rep.Root) + "\n"
	if n.Text != want {
		t.Fatalf("note text %q, want %q", n.Text, want)
	}
	// And the spec's own example body parses.
	c, err := ParseCheckpoint("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
	if err != nil || c.Origin != "example.com/behind-the-sofa" || c.Size != 20852163 {
		t.Fatalf("spec example: %+v, %v", c, err)
	}
}

func readNotes(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := readFile(dir, CheckpointsFile)
	if err != nil {
		t.Fatal(err)
	}
	notes, _, err := SplitCheckpoints(b)
	if err != nil || len(notes) == 0 {
		t.Fatalf("checkpoints: %d, %v", len(notes), err)
	}
	return notes
}

func TestParseCheckpointStrict(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, text := range []string{
		"o\n1\n" + root, "o\n01\n" + root + "\n", "o\n+1\n" + root + "\n", "o\n-1\n" + root + "\n",
		"o\n1\nAAAA\n", "\n1\n" + root + "\n", "o o\n1\n" + root + "\n", "o\n1\n" + root + "\n\n",
		"o\n18446744073709551616\n" + root + "\n", "o\n1\n",
	} {
		if _, err := ParseCheckpoint(text); err == nil {
			t.Errorf("%q parsed", text)
		}
	}
	if c, err := ParseCheckpoint("o\n0\n" + root + "\next\n"); err != nil || c.Size != 0 || len(c.Extensions) != 1 {
		t.Errorf("valid checkpoint with an extension line: %+v, %v", c, err)
	}
}

// The SVID certifies the audit key, so a checkpoint verifies against the trust bundle alone.
func TestKeyCertificate(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	id := spiffeid.RequireFromPath(td, "/agent/planner")
	svid := ca.CreateX509SVID(id)
	s, v := newKey(t)
	cert, err := CertifyKey(VerifierKey(v), svid, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, gotID, err := VerifyKeyCertificate(cert, ca.X509Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if gotID != id || VerifierKey(got) != VerifierKey(v) {
		t.Fatalf("certified %s for %s", VerifierKey(got), gotID)
	}
	msg, err := SignCheckpoint(Checkpoint{Origin: testOrigin, Size: 1, Root: make([]byte, 32)}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(msg, got); err != nil {
		t.Fatal(err)
	}

	other := testca.New(t, td)
	if _, _, err := VerifyKeyCertificate(cert, other.X509Bundle()); err == nil {
		t.Fatal("verified against another trust domain's CA")
	}
	// Another workload cannot certify this log's key: the key name is bound to the SVID's ID.
	if _, err := CertifyKey(VerifierKey(v), ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/other")), time.Now()); err == nil {
		t.Fatal("certified a key named for another workload")
	}
	tampered := bytes.Replace(cert, []byte("."), []byte(".e"), 1)
	if _, _, err := VerifyKeyCertificate(tampered, ca.X509Bundle()); err == nil {
		t.Fatal("a tampered certificate verified")
	}
}
