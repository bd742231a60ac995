package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// alertRules is the Prometheus rule-file shape of deploy/monitoring/alerts.yaml, decoded strictly so a misspelt
// key fails the test rather than being ignored by Prometheus's loader too late.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricName = regexp.MustCompile(`\bagentauth_[a-z0-9_]+`)

// monitoringMetrics returns every agentauth_ metric the dashboard and the alert rules query, each with where it
// is used. Histogram series (_bucket, _sum, _count) are reported under the family's name when family says so.
func monitoringMetrics(t *testing.T, family func(string) bool) map[string][]string {
	t.Helper()
	dir := filepath.Join("..", "..", "deploy", "monitoring")
	used := map[string][]string{}
	add := func(expr, where string) {
		for _, n := range metricName.FindAllString(expr, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && family(base) {
					n = base
				}
			}
			used[n] = append(used[n], where)
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			switch {
			case r.Alert == "" || r.Expr == "":
				t.Errorf("alerts.yaml group %s: a rule without alert or expr", g.Name)
			case seen[r.Alert]:
				t.Errorf("alerts.yaml: alert %s defined twice", r.Alert)
			case r.Labels["severity"] == "" || r.Annotations["summary"] == "":
				t.Errorf("alerts.yaml: alert %s has no severity label or summary annotation", r.Alert)
			}
			seen[r.Alert] = true
			add(r.Expr, "alert "+r.Alert)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("alerts.yaml has %d alerts; the rule file no longer decodes as expected", len(seen))
	}

	b, err = os.ReadFile(filepath.Join(dir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var walk func(v any, title string)
	walk = func(v any, title string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				title = s
			}
			if e, ok := v["expr"].(string); ok {
				add(e, "panel "+title)
			}
			for _, c := range v {
				walk(c, title)
			}
		case []any:
			for _, c := range v {
				walk(c, title)
			}
		}
	}
	walk(dash, "")
	if len(used) < 10 {
		t.Fatalf("the dashboard and alerts query %d metrics; the files no longer parse as expected", len(used))
	}
	return used
}
