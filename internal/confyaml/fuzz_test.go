package confyaml

import (
	"strings"
	"testing"
)

// FuzzParse: any document is either a config or an error; the shape check never panics, and a document of
// aliases of aliases stays fast.
func FuzzParse(f *testing.F) {
	f.Add([]byte(doc))
	f.Add([]byte("serverId: x\nroutes: [{nmae: a}]\nlimits: {readTimout: 5s}\n"))
	f.Add([]byte("a: &a {serverID: x}\n<<: *a\nbundles: {x: &l [a, b]}\nroutes: *l\n"))
	var laughs strings.Builder
	laughs.WriteString("any: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		laughs.WriteString("r" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 9; j++ {
			laughs.WriteString("*a" + string(rune('0'+i-1)) + ", ")
		}
		laughs.WriteString("]\n")
	}
	f.Add([]byte(laughs.String()))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Parse("fuzz config", data, &shapeConfig{})
	})
}
