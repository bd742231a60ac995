package netns

import (
	"os"
	"strings"
	"testing"
)

// TestRedirectRecipeDocumented: docs/transparent.md shows the rule files TestTransparentInterception runs, as they
// are, so the documented recipe and the tested one cannot drift apart. It needs no root.
func TestRedirectRecipeDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/transparent.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{nftRecipe, iptablesRecipe} {
		rules, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```\n"+string(rules)+"```\n") && !strings.Contains(string(doc), "```sh\n"+string(rules)+"```\n") {
			t.Errorf("docs/transparent.md does not show %s as it is, in a code block of its own", f)
		}
	}
}
