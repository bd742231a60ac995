package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func testSpec() Spec {
	return Spec{
		Name:     "controller",
		Binary:   []byte("\x7fELF a static binary stands here"),
		CACerts:  []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
		Version:  "0.1.0",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Created:  time.Unix(1700000000, 0),
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
	}
}

// build writes the image of spec into a new directory, as `make image` does, and returns its digest and the
// SHA-256 of every file written.
func build(t *testing.T, spec Spec) (v1.Hash, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag("agentauth/" + spec.Name + ":" + spec.Version)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(img, dir, spec.Name, ref); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		sums[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, sums
}

func TestBuildIsReproducible(t *testing.T) {
	spec := testSpec()
	d1, files1 := build(t, spec)
	d2, files2 := build(t, spec)
	if d1 != d2 {
		t.Fatalf("two builds of the same inputs: digests %s and %s", d1, d2)
	}
	if len(files1) == 0 || !mapsEqual(files1, files2) {
		t.Fatalf("two builds wrote different files:\n%v\n%v", files1, files2)
	}
	// Each input is part of the digest: a change of any gives another image.
	for name, change := range map[string]func(*Spec){
		"binary":   func(s *Spec) { s.Binary = append(slices.Clone(s.Binary), '!') },
		"version":  func(s *Spec) { s.Version = "0.1.1" },
		"revision": func(s *Spec) { s.Revision = "fedcba9876543210fedcba9876543210fedcba98" },
		"created":  func(s *Spec) { s.Created = s.Created.Add(time.Second) },
	} {
		s := testSpec()
		change(&s)
		if d, _ := build(t, s); d == d1 {
			t.Errorf("changing the %s kept digest %s", name, d)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestImageConfigAndFiles reads the image back from the OCI layout and the tarball `make image` wrote, as a
// runtime would, and checks what the chart and PodSecurity "restricted" rely on.
func TestImageConfigAndFiles(t *testing.T) {
	spec := testSpec()
	dir := t.TempDir()
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	ref := name.MustParseReference("agentauth/controller:0.1.0").(name.Tag)
	if err := Write(img, dir, spec.Name, ref); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "controller"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "0.1.0" ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/agentauth/controller:0.1.0" {
		t.Fatalf("OCI layout index: %+v, want one manifest %s tagged 0.1.0", im.Manifests, want)
	}
	fromLayout, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(filepath.Join(dir, "controller.tar"), &ref)
	if err != nil {
		t.Fatal(err)
	}
	// The docker-archive format keeps the config and the layers but not the OCI manifest: compare the config.
	wantConfig, _ := img.ConfigName()
	if c, _ := fromTar.ConfigName(); c != wantConfig {
		t.Fatalf("tarball holds config %s, want %s", c, wantConfig)
	}

	cf, err := fromLayout.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the numeric non-root 65532:65532 (runAsNonRoot needs a number)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/controller"}) || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  spec.Version,
		"org.opencontainers.image.revision": spec.Revision,
		"org.opencontainers.image.title":    "controller",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(spec.Created) {
		t.Errorf("platform %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	for _, h := range cf.History {
		if !h.Created.Equal(spec.Created) {
			t.Errorf("history entry created %v, want %v", h.Created, spec.Created)
		}
	}

	layers, err := fromLayout.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want exactly one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name], order = h, append(order, h.Name)
		if h.Name == "usr/local/bin/controller" {
			b, _ := io.ReadAll(tr)
			if !bytes.Equal(b, spec.Binary) {
				t.Error("the binary in the layer is not the one given")
			}
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("layer entries not sorted: %q", order)
	}
	wantFiles := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"home/", "home/nonroot/", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/controller"}
	if !slices.Equal(order, wantFiles) {
		t.Errorf("layer holds %q, want exactly %q (no shell, nothing else)", order, wantFiles)
	}
	bin := entries["usr/local/bin/controller"]
	if bin == nil || bin.Mode != 0o755 || bin.Uid != 0 || bin.Gid != 0 || !bin.ModTime.Equal(spec.Created) {
		t.Errorf("binary entry %+v: want mode 0755, owned by root (not writable by the user it runs as), time %v", bin, spec.Created)
	}
	if h := entries["home/nonroot/"]; h == nil || h.Uid != NonRootUID {
		t.Errorf("home/nonroot/ %+v: want owned by %d", h, NonRootUID)
	}
}

func TestBuildRefuses(t *testing.T) {
	for name, change := range map[string]func(*Spec){
		"empty binary": func(s *Spec) { s.Binary = nil },
		"path as name": func(s *Spec) { s.Name = "bin/controller" },
	} {
		s := testSpec()
		change(&s)
		if _, err := Build(s); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func TestSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Unix(0, 0), true},
		{"1700000000", time.Unix(1700000000, 0), true},
		{"-1", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		got, err := sourceDateEpoch(tc.in)
		if (err == nil) != tc.ok || tc.ok && !got.Equal(tc.want) {
			t.Errorf("sourceDateEpoch(%q) = %v, %v", tc.in, got, err)
		}
	}
}
