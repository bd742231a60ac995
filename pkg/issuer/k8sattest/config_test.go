package k8sattest

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // the fields named, in order
	}{
		{"default template", Config{Audience: "a"}, nil},
		{"custom template", Config{Audience: "a", SPIFFEIDTemplate: "/k8s/{namespace}/{serviceAccount}/agent"}, nil},
		{"no audience", Config{}, []string{"k.audience"}},
		{"no namespace", Config{Audience: "a", SPIFFEIDTemplate: "/sa/{serviceAccount}"}, []string{"k.spiffeIDTemplate"}},
		{"no service account", Config{Audience: "a", SPIFFEIDTemplate: "/ns/{namespace}"}, []string{"k.spiffeIDTemplate"}},
		{"twice", Config{Audience: "a", SPIFFEIDTemplate: "/{namespace}/{namespace}/{serviceAccount}"}, []string{"k.spiffeIDTemplate"}},
		{"unknown placeholder", Config{Audience: "a", SPIFFEIDTemplate: "/{namespace}/{serviceAccount}/{pod}"}, []string{"k.spiffeIDTemplate"}},
		{"not a path", Config{Audience: "a", SPIFFEIDTemplate: "ns/{namespace}/sa/{serviceAccount}"}, []string{"k.spiffeIDTemplate"}},
		{"trailing slash", Config{Audience: "a", SPIFFEIDTemplate: "/ns/{namespace}/sa/{serviceAccount}/"}, []string{"k.spiffeIDTemplate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			tt.cfg.Validate("k", func(field, format string, args ...any) { got = append(got, field) })
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("fields %v, want %v", got, tt.want)
			}
		})
	}
}
