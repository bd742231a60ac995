package redirect

import (
	"strings"
	"testing"
)

// FuzzParse: the port and CIDR lists come from pod annotations. Whatever is accepted renders back to flags that
// parse to the same rules.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"80,443", " 5432 , 6379", "10.0.0.0/8,fd00::/8", "0", "1.2.3.4/33", ",", "65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, perr := ParsePorts(s)
		cidrs, cerr := ParseCIDRs(s)
		if perr != nil && cerr != nil {
			return
		}
		r := Rules{SidecarUID: 1, OutboundPort: 1, ExcludeOutboundPorts: ports, ExcludeOutboundCIDRs: cidrs}
		if r.Validate() != nil {
			return
		}
		got, err := ParseArgs(r.Args(), nil)
		if err != nil {
			t.Fatalf("accepted %q but its flags %q do not parse: %v", s, strings.Join(r.Args(), " "), err)
		}
		if len(got.ExcludeOutboundPorts) != len(ports) || len(got.ExcludeOutboundCIDRs) != len(cidrs) {
			t.Fatalf("round trip of %q changed the rules: %+v", s, got)
		}
	})
}
