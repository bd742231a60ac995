package buildinfo

import (
	"maps"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want Info
	}{
		{"release build", debug.BuildInfo{GoVersion: "go1.26.8",
			Main:     debug.Module{Path: "github.com/agentauth/agentauth", Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}},
			Info{Module: "github.com/agentauth/agentauth", Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.26.8"}},
		{"dirty work tree", debug.BuildInfo{GoVersion: "go1.26.8",
			Main:     debug.Module{Path: "github.com/agentauth/agentauth", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			Info{Module: "github.com/agentauth/agentauth", Version: "(devel)", Revision: "abc123", Modified: true, GoVersion: "go1.26.8"}},
		{"no VCS stamping", debug.BuildInfo{GoVersion: "go1.26.8"},
			Info{Module: Unknown, Version: Unknown, Revision: Unknown, GoVersion: "go1.26.8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(&tt.bi); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	in := Info{Module: "github.com/agentauth/agentauth", Version: "v1.2.3", Revision: "abc123", Modified: true, GoVersion: "go1.26.8"}
	want := "sidecar v1.2.3 (github.com/agentauth/agentauth, revision abc123, modified, go1.26.8)"
	if got := in.Line("sidecar"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Info{Module: "m", Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.26.8"}.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "agentauth_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	want := map[string]string{"version": "v1.2.3", "revision": "abc123", "modified": "false", "goversion": "1.26.8"}
	if !maps.Equal(labels, want) || m.GetGauge().GetValue() != 1 {
		t.Errorf("labels %v value %v, want %v and 1", labels, m.GetGauge().GetValue(), want)
	}
}
