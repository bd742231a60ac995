package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUID is the user and group the images run as: distroless's "nonroot", so that policies written for
// those images (runAsUser, fsGroup, PodSecurity "restricted") fit ours too.
const NonRootUID = 65532

// binDir is where the binary goes inside the image.
const binDir = "/usr/local/bin"

// caCertsPath is where Go's crypto/x509 looks first on Linux for the roots (the controller fetches JWKS and SSF
// streams over HTTPS).
const caCertsPath = "/etc/ssl/certs/ca-certificates.crt"

// Spec is one image: a single static binary on an empty base.
type Spec struct {
	// Name is the binary's name, and the image's title: sidecar, controller.
	Name string
	// Binary is the static binary's content (CGO_ENABLED=0, -trimpath).
	Binary []byte
	// CACerts, if set, is a PEM bundle of root certificates installed at caCertsPath.
	CACerts []byte
	// Version and Revision become the org.opencontainers.image.version and .revision labels.
	Version, Revision string
	// Source is the org.opencontainers.image.source label (the repository's URL), if set.
	Source string
	// Created is the one timestamp the image carries: its config, its history and every file in its layer.
	Created time.Time
	// Platform is the binary's, e.g. linux/amd64.
	Platform v1.Platform
}

// Build returns the image described by spec. The same spec always gives the same digest: one layer with sorted
// entries, fixed owners, modes and times, and a config with no time but spec.Created.
func Build(spec Spec) (v1.Image, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/ ") {
		return nil, fmt.Errorf("image name %q: want a bare binary name", spec.Name)
	}
	if len(spec.Binary) == 0 {
		return nil, fmt.Errorf("image %s: empty binary", spec.Name)
	}
	layerTar, err := rootFS(spec)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", spec.Name, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", spec.Name, err)
	}
	created := v1.Time{Time: spec.Created.UTC()}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "imagebuild " + spec.Name, Comment: "static binary"},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: append layer: %w", spec.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = spec.Platform.OS, spec.Platform.Architecture, spec.Platform.Variant
	cf.Created = created
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", NonRootUID, NonRootUID),
		Entrypoint: []string{path.Join(binDir, spec.Name)},
		WorkingDir: "/",
		Env:        []string{"PATH=" + binDir},
		Labels:     labels(spec),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	return img, nil
}

func labels(spec Spec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":    spec.Name,
		"org.opencontainers.image.version":  spec.Version,
		"org.opencontainers.image.revision": spec.Revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  spec.Created.UTC().Format(time.RFC3339),
	}
	if spec.Source != "" {
		l["org.opencontainers.image.source"] = spec.Source
	}
	return l
}

// rootFS is the layer's tar: the binary, the nonroot user's passwd and group entries (for tools that resolve
// the user by name), the CA bundle if any, and the directories holding them. No shell, no package manager.
func rootFS(spec Spec) ([]byte, error) {
	files := map[string]struct {
		mode int64
		data []byte
	}{
		path.Join(binDir, spec.Name): {0o755, spec.Binary},
		"/etc/passwd":                {0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID)},
		"/etc/group":                 {0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", NonRootUID)},
	}
	if len(spec.CACerts) > 0 {
		files[caCertsPath] = struct {
			mode int64
			data []byte
		}{0o644, spec.CACerts}
	}
	dirs := map[string]bool{"/tmp": true, "/home/nonroot": true}
	for p := range files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		for p := path.Dir(d); p != "/"; p = path.Dir(p) {
			dirs[p] = true
		}
	}
	names := make([]string, 0, len(files)+len(dirs))
	for p := range files {
		names = append(names, p)
	}
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), ModTime: spec.Created.UTC(), Format: tar.FormatPAX}
		if f, ok := files[p]; ok {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
			switch p {
			case "/tmp":
				hdr.Mode = 0o1777
			case "/home/nonroot":
				hdr.Mode, hdr.Uid, hdr.Gid = 0o700, NonRootUID, NonRootUID
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if f, ok := files[p]; ok {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// containerdName is ref as containerd names images: fully qualified, with docker.io for Docker Hub (not
// go-containerregistry's index.docker.io).
func containerdName(ref name.Tag) string {
	if ref.RegistryStr() == name.DefaultRegistry {
		return "docker.io/" + ref.RepositoryStr() + ":" + ref.TagStr()
	}
	return ref.Name()
}

// Write puts img in dir as an OCI image layout (dir/NAME, tagged ref in its index) and as a tarball
// (dir/NAME.tar) that `docker load`, `podman load` and `kind load image-archive` take. Both are replaced whole.
func Write(img v1.Image, dir, imgName string, ref name.Tag) error {
	layoutDir := path.Join(dir, imgName)
	if err := os.RemoveAll(layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", layoutDir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
		"io.containerd.image.name":          containerdName(ref),
	})); err != nil {
		return fmt.Errorf("OCI layout %s: %w", layoutDir, err)
	}
	tarPath := layoutDir + ".tar"
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		return fmt.Errorf("tarball %s: %w", tarPath, err)
	}
	return nil
}
