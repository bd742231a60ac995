// Package buildinfo reads what a binary knows of its own build (module version, VCS revision, Go version) from
// the build information the Go toolchain embeds, for each binary's -version flag and the agentauth_build_info
// metric. Nothing is stamped with -ldflags: `go build`, `go install` and `make release` all give the same answer.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Unknown stands for a field the build did not record: a test binary has no module version, and a build
// without VCS stamping (-buildvcs=false, or outside a git checkout) has no revision.
const Unknown = "unknown"

// Info is one binary's build.
type Info struct {
	// Module is the main module's path.
	Module string `json:"module"`
	// Version is the main module's version: a tag, a pseudo-version, or "(devel)".
	Version string `json:"version"`
	// Revision is the VCS commit, with Modified set when the work tree had uncommitted changes.
	Revision  string `json:"revision"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Module: Unknown, Version: Unknown, Revision: Unknown, GoVersion: Unknown}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Module: bi.Main.Path, Version: bi.Main.Version, Revision: Unknown, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	if in.Module == "" {
		in.Module = Unknown
	}
	if in.Version == "" {
		in.Version = Unknown
	}
	return in
}

// String is the -version line: "<binary> <version> (<module>, revision <rev>[, modified], <go version>)".
func (in Info) String() string {
	rev := in.Revision
	if in.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (%s, revision %s, %s)", in.Version, in.Module, rev, in.GoVersion)
}

// Line is what a binary's -version prints: its name and String.
func (in Info) Line(binary string) string {
	return binary + " " + in.String()
}

// Collector returns the agentauth_build_info gauge: always 1, with the build as labels, so a dashboard can
// show which version runs where and join it to any other series by instance.
func (in Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentauth_build_info",
		Help: "The running binary's build: module version, VCS revision, Go version. Always 1.",
		ConstLabels: prometheus.Labels{
			"version":   in.Version,
			"revision":  in.Revision,
			"modified":  fmt.Sprint(in.Modified),
			"goversion": strings.TrimPrefix(in.GoVersion, "go"),
		},
	})
	g.Set(1)
	return g
}
