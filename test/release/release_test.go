//go:build release

// Package release checks `make release`: run with `make test-release` (the build tag keeps the slow cross-builds
// out of `make test`).
package release

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// binaries are the commands of ./cmd, each built for every platform.
var binaries = []string{"agentauthctl", "controller", "sidecar", "ssf-transmit"}

var platforms = map[string]elf.Machine{"linux_amd64": elf.EM_X86_64, "linux_arm64": elf.EM_AARCH64}

func TestRelease(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dist := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("make", "-C", root, "release", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}

	t.Run("SHA256SUMS covers every file and matches it", func(t *testing.T) {
		sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
		var files []string
		err := filepath.WalkDir(dist, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() == "SHA256SUMS" {
				return err
			}
			rel, err := filepath.Rel(dist, path)
			files = append(files, filepath.ToSlash(rel))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"LICENSE"}
		for _, b := range binaries {
			want = append(want, b+".cdx.json")
		}
		for p := range platforms {
			for _, b := range binaries {
				want = append(want, p+"/"+b)
			}
		}
		slices.Sort(want)
		slices.Sort(files)
		if !slices.Equal(files, want) {
			t.Fatalf("files %v, want %v", files, want)
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(dist, f))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); sums[f] != got {
				t.Errorf("%s: SHA256SUMS says %q, the file hashes to %s", f, sums[f], got)
			}
		}
		if _, err := exec.LookPath("sha256sum"); err == nil {
			check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
			check.Dir = dist
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("sha256sum --check: %v\n%s", err, out)
			}
		}
	})

	t.Run("binaries are static, of their architecture, with build info", func(t *testing.T) {
		for p, machine := range platforms {
			for _, b := range binaries {
				path := filepath.Join(dist, p, b)
				checkELF(t, path, machine)
				bi, err := buildinfo.ReadFile(path)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				settings := map[string]string{}
				for _, s := range bi.Settings {
					settings[s.Key] = s.Value
				}
				arch := strings.TrimPrefix(p, "linux_")
				if bi.Main.Path != "github.com/agentauth/agentauth" || settings["CGO_ENABLED"] != "0" ||
					settings["GOOS"] != "linux" || settings["GOARCH"] != arch || settings["-trimpath"] != "true" {
					t.Errorf("%s: build info main %s, settings %v", path, bi.Main.Path, settings)
				}
				if runtime.GOOS == "linux" && runtime.GOARCH == arch {
					out, err := exec.Command(path, "-version").Output()
					want := b + " " + bi.Main.Version + " (github.com/agentauth/agentauth, revision "
					if err != nil || !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), bi.GoVersion+")") {
						t.Errorf("%s -version: %q, %v; want %q... %s)", path, out, err, want, bi.GoVersion)
					}
				}
			}
		}
	})

	t.Run("each binary's SBOM lists every module it links, and go.mod requires them", func(t *testing.T) {
		required := map[string]bool{}
		for _, m := range goModRequires(t, root) {
			required[m] = true
		}
		for _, b := range binaries {
			listed := sbomModules(t, filepath.Join(dist, b+".cdx.json"))
			linked := linkedModules(t, filepath.Join(dist, "linux_amd64", b))
			if len(linked) < 3 {
				t.Fatalf("%s links only %v", b, linked)
			}
			for _, m := range linked {
				if !listed[m] {
					t.Errorf("%s.cdx.json does not list %s, which %s links", b, m, b)
				}
				if !required[m] {
					t.Errorf("%s links %s, which go.mod does not require", b, m)
				}
			}
		}
	})
}

// sbomModules reads a CycloneDX SBOM and returns its components (at any depth) as path@version, checking each
// component's purl.
func sbomModules(t *testing.T, path string) map[string]bool {
	t.Helper()
	type component struct {
		Name       string      `json:"name"`
		Version    string      `json:"version"`
		PURL       string      `json:"purl"`
		Components []component `json:"components"`
	}
	var bom struct {
		BOMFormat  string      `json:"bomFormat"`
		Components []component `json:"components"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &bom); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if bom.BOMFormat != "CycloneDX" {
		t.Errorf("%s: bomFormat %q", path, bom.BOMFormat)
	}
	listed := map[string]bool{}
	var walk func([]component)
	walk = func(cs []component) {
		for _, c := range cs {
			if !strings.HasPrefix(c.PURL, "pkg:golang/"+c.Name+"@"+c.Version) {
				t.Errorf("%s: component %s %s has purl %s", path, c.Name, c.Version, c.PURL)
			}
			listed[c.Name+"@"+c.Version] = true
			walk(c.Components)
		}
	}
	walk(bom.Components)
	return listed
}

// readSums reads a sha256sum file: "<hex>  <path>" per line.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

// checkELF checks that path is an executable for machine with no program interpreter: statically linked.
func checkELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: machine %v type %v, want %v ET_EXEC", path, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%v)", path, p.Type)
		}
	}
}

// linkedModules lists the modules (path@version) in the build info of the binary at path.
func linkedModules(t *testing.T, path string) []string {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	for _, d := range bi.Deps {
		seen[d.Path+"@"+d.Version] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// goModRequires lists go.mod's requirements as path@version, read by the go command itself.
func goModRequires(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	var mod struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, r := range mod.Require {
		ms = append(ms, r.Path+"@"+r.Version)
	}
	return ms
}
