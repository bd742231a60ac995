package redirect

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Defaults of the rules' ports, the sidecar's listeners in an injected pod.
const (
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
)

// Rules says what to redirect. Its zero value is not valid: SidecarUID and OutboundPort are needed.
type Rules struct {
	// SidecarUID is the uid the sidecar runs as: its own connections are never redirected (they would loop back
	// into it).
	SidecarUID uint32
	// OutboundPort is the sidecar's transparent listener on 127.0.0.1: outbound TCP goes there.
	OutboundPort uint16
	// ExcludeOutboundPorts are destination ports left alone (e.g. a database the agent reaches directly).
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destination networks left alone, IPv4 or IPv6.
	ExcludeOutboundCIDRs []netip.Prefix
	// InboundPorts are the tool's ports whose incoming TCP goes to the sidecar's ingress listener on InboundPort
	// instead (the ingress role): callers reach the tool only through the sidecar.
	InboundPorts []uint16
	// InboundPort is the sidecar's ingress listener (default DefaultInboundPort when InboundPorts is set).
	InboundPort uint16
}

// Validate reports the first problem with r, naming the flag it came from.
func (r Rules) Validate() error {
	if r.OutboundPort == 0 {
		return errors.New("-outbound-port: required (the sidecar's transparent listener)")
	}
	if len(r.InboundPorts) > 0 && r.InboundPort == 0 {
		return errors.New("-inbound-port: required with -inbound-ports (the sidecar's ingress listener)")
	}
	for _, p := range r.InboundPorts {
		if p == r.InboundPort || p == r.OutboundPort {
			return fmt.Errorf("-inbound-ports: %d is one of the sidecar's own listeners", p)
		}
	}
	if slices.Contains(r.ExcludeOutboundPorts, r.OutboundPort) {
		return fmt.Errorf("-exclude-outbound-ports: %d is the transparent listener", r.OutboundPort)
	}
	return nil
}

// Args renders r as the command-line flags ParseArgs reads: the injector writes them into the init step.
func (r Rules) Args() []string {
	args := []string{
		"-sidecar-uid=" + strconv.FormatUint(uint64(r.SidecarUID), 10),
		"-outbound-port=" + strconv.Itoa(int(r.OutboundPort)),
	}
	if len(r.ExcludeOutboundPorts) > 0 {
		args = append(args, "-exclude-outbound-ports="+joinPorts(r.ExcludeOutboundPorts))
	}
	if len(r.ExcludeOutboundCIDRs) > 0 {
		cidrs := make([]string, len(r.ExcludeOutboundCIDRs))
		for i, p := range r.ExcludeOutboundCIDRs {
			cidrs[i] = p.String()
		}
		args = append(args, "-exclude-outbound-cidrs="+strings.Join(cidrs, ","))
	}
	if len(r.InboundPorts) > 0 {
		args = append(args, "-inbound-ports="+joinPorts(r.InboundPorts), "-inbound-port="+strconv.Itoa(int(r.InboundPort)))
	}
	return args
}

// ParseArgs reads the flags Args writes.
func ParseArgs(args []string, out io.Writer) (Rules, error) {
	var r Rules
	fs := flag.NewFlagSet("redirect", flag.ContinueOnError)
	fs.SetOutput(out)
	uid := fs.Uint("sidecar-uid", 0, "uid of the sidecar, whose own connections are not redirected (required)")
	outbound := fs.Uint("outbound-port", DefaultOutboundPort, "the sidecar's transparent listener on 127.0.0.1")
	inbound := fs.Uint("inbound-port", DefaultInboundPort, "the sidecar's ingress listener")
	exPorts := fs.String("exclude-outbound-ports", "", "comma-separated destination ports not redirected")
	exCIDRs := fs.String("exclude-outbound-cidrs", "", "comma-separated destination CIDRs not redirected")
	inPorts := fs.String("inbound-ports", "", "comma-separated ports of the tool whose inbound TCP goes to the ingress listener")
	if err := fs.Parse(args); err != nil {
		return r, err
	}
	if fs.NArg() > 0 {
		return r, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["sidecar-uid"] {
		return r, errors.New("-sidecar-uid: required")
	}
	var err error
	if r.SidecarUID, err = toUint32(*uid); err != nil {
		return r, fmt.Errorf("-sidecar-uid: %w", err)
	}
	if r.OutboundPort, err = toPort(*outbound); err != nil {
		return r, fmt.Errorf("-outbound-port: %w", err)
	}
	if r.ExcludeOutboundPorts, err = ParsePorts(*exPorts); err != nil {
		return r, fmt.Errorf("-exclude-outbound-ports: %w", err)
	}
	if r.ExcludeOutboundCIDRs, err = ParseCIDRs(*exCIDRs); err != nil {
		return r, fmt.Errorf("-exclude-outbound-cidrs: %w", err)
	}
	if r.InboundPorts, err = ParsePorts(*inPorts); err != nil {
		return r, fmt.Errorf("-inbound-ports: %w", err)
	}
	if len(r.InboundPorts) > 0 {
		if r.InboundPort, err = toPort(*inbound); err != nil {
			return r, fmt.Errorf("-inbound-port: %w", err)
		}
	}
	return r, r.Validate()
}

// ParsePorts reads a comma-separated list of TCP ports (1..65535); spaces around items are allowed, an empty
// string is no ports, duplicates are refused.
func ParsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ports []uint16
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		n, err := strconv.ParseUint(item, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port (1..65535)", item)
		}
		if slices.Contains(ports, uint16(n)) {
			return nil, fmt.Errorf("port %d is listed twice", n)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// ParseCIDRs reads a comma-separated list of IPv4 or IPv6 networks in CIDR notation, e.g. 10.0.0.0/8,fd00::/8.
// A network with host bits set (10.0.0.1/8) is refused: it is most likely a typo.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8)", item)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%q has host bits set; did you mean %s?", item, p.Masked())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 network; write it as IPv4", item)
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("%q has a zone", item)
		}
		out = append(out, p)
	}
	return out, nil
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func toPort(n uint) (uint16, error) {
	if n == 0 || n > 65535 {
		return 0, fmt.Errorf("%d is not a port (1..65535)", n)
	}
	return uint16(n), nil
}

func toUint32(n uint) (uint32, error) {
	if n > 1<<32-1 {
		return 0, fmt.Errorf("%d is out of range", n)
	}
	return uint32(n), nil
}
