package redirect

import (
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestArgsRoundTrip(t *testing.T) {
	for _, r := range []Rules{
		{SidecarUID: 65532, OutboundPort: 15001},
		{SidecarUID: 0, OutboundPort: 15001, ExcludeOutboundPorts: []uint16{5432, 6379},
			ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
			InboundPorts:         []uint16{8080}, InboundPort: 15006},
	} {
		got, err := ParseArgs(r.Args(), io.Discard)
		if err != nil {
			t.Fatalf("ParseArgs(%q): %v", r.Args(), err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %q: got %+v, want %+v", r.Args(), got, r)
		}
	}
}

func TestParseArgsRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-sidecar-uid: required"},
		{[]string{"-sidecar-uid=1", "-outbound-port=0"}, "-outbound-port"},
		{[]string{"-sidecar-uid=1", "-exclude-outbound-ports=80,x"}, `"x" is not a port`},
		{[]string{"-sidecar-uid=1", "-exclude-outbound-ports=80,80"}, "listed twice"},
		{[]string{"-sidecar-uid=1", "-exclude-outbound-ports=15001"}, "is the transparent listener"},
		{[]string{"-sidecar-uid=1", "-exclude-outbound-cidrs=10.0.0.1/8"}, "host bits set; did you mean 10.0.0.0/8"},
		{[]string{"-sidecar-uid=1", "-exclude-outbound-cidrs=::ffff:10.0.0.0/104"}, "IPv4-mapped"},
		{[]string{"-sidecar-uid=1", "-inbound-ports=15006"}, "one of the sidecar's own listeners"},
		{[]string{"-sidecar-uid=1", "extra"}, `unexpected argument "extra"`},
	} {
		_, err := ParseArgs(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseArgs(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
