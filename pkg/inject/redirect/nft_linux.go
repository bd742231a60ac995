package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the name of the two tables the rules live in (families ip and ip6): removing them removes every
// rule, and nothing else in the pod's ruleset is touched.
const TableName = "agentauth"

// IPv4 outbound TCP is redirected. The transparent listener is on 127.0.0.1 only (a listener on the pod's
// address would let any peer use the pod's identity), so IPv6 outbound TCP that would have been redirected is
// refused with a reset instead: fail closed, never around the sidecar.

// Install replaces the pod's agentauth tables with r's rules, in one netlink batch: either every rule is in
// place or none changed. Installing twice gives the same ruleset.
func Install(r Rules) error {
	if err := r.Validate(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("redirect: netlink: %w", err)
	}
	v4 := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	v6 := &nftables.Table{Family: nftables.TableFamilyIPv6, Name: TableName}
	for _, t := range []*nftables.Table{v4, v6} {
		// Add (a no-op when present), delete, add again: the batch never fails on a missing table.
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
	}
	addV4(c, v4, r)
	addV6(c, v6, r)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: installing the rules: %w", err)
	}
	return nil
}

// Remove deletes the agentauth tables and their rules; removing what is not there is not an error.
func Remove() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("redirect: netlink: %w", err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Family: fam, Name: TableName}
		c.AddTable(t)
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: removing the rules: %w", err)
	}
	return nil
}

// Installed reports whether either agentauth table is in the current network namespace.
func Installed() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("redirect: netlink: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("redirect: listing tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

func addV4(c *nftables.Conn, t *nftables.Table, r Rules) {
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	rule := func(ex ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: ex}) }
	rule(append(notTCP(), ret())...)
	rule(append(uidIs(r.SidecarUID), ret())...)
	rule(append(daddrIn(netip.MustParsePrefix("127.0.0.0/8")), ret())...)
	for _, p := range r.ExcludeOutboundCIDRs {
		if p.Addr().Is4() {
			rule(append(daddrIn(p), ret())...)
		}
	}
	for _, p := range r.ExcludeOutboundPorts {
		rule(append(dportIs(p), ret())...)
	}
	rule(redirectTo(r.OutboundPort)...)

	if len(r.InboundPorts) == 0 {
		return
	}
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	for _, p := range r.InboundPorts {
		ex := append(isTCP(), dportIs(p)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(ex, redirectTo(r.InboundPort)...)})
	}
}

func addV6(c *nftables.Conn, t *nftables.Table, r Rules) {
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
	rule := func(ex ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: ex}) }
	rule(append(notTCP(), ret())...)
	rule(append(uidIs(r.SidecarUID), ret())...)
	rule(append(daddrIn(netip.MustParsePrefix("::1/128")), ret())...)
	for _, p := range r.ExcludeOutboundCIDRs {
		if p.Addr().Is6() {
			rule(append(daddrIn(p), ret())...)
		}
	}
	for _, p := range r.ExcludeOutboundPorts {
		rule(append(dportIs(p), ret())...)
	}
	rule(reset())

	if len(r.InboundPorts) == 0 {
		return
	}
	// IPv6 callers cannot be redirected to the IPv4 ingress listener; they are refused rather than let past it.
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	for _, p := range r.InboundPorts {
		ex := append(notLoopbackIn(), isTCP()...)
		ex = append(ex, dportIs(p)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: append(ex, reset())})
	}
}

func ret() expr.Any { return &expr.Verdict{Kind: expr.VerdictReturn} }

func reset() expr.Any { return &expr.Reject{Type: unix.NFT_REJECT_TCP_RST} }

func l4proto(op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

func isTCP() []expr.Any  { return l4proto(expr.CmpOpEq) }
func notTCP() []expr.Any { return l4proto(expr.CmpOpNeq) }

func uidIs(uid uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uid)},
	}
}

// daddrIn matches the destination address against p (the caller picks the table of p's family).
func daddrIn(p netip.Prefix) []expr.Any {
	offset, size := uint32(16), uint32(4) // IPv4 header: daddr at 16
	if p.Addr().Is6() {
		offset, size = 24, 16 // IPv6 header: daddr at 24
	}
	mask := make([]byte, size)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}

// dportIs matches the TCP destination port (after a TCP match).
func dportIs(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func notLoopbackIn() []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, "lo")
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name},
	}
}

func redirectTo(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	}
}
