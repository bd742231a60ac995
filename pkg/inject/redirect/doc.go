// Package redirect installs and removes the netfilter rules that send a pod's traffic through its sidecar: its
// outbound TCP to the sidecar's transparent listener (except the sidecar's own uid, loopback, and excluded ports
// and CIDRs), and inbound TCP to the tool's protected ports to the sidecar's ingress listener. It talks nftables
// over netlink (github.com/google/nftables), so the init step is the sidecar binary itself (`sidecar redirect
// install|remove`): one static binary, no iptables or shell in the image. It is a leaf: the sidecar links it.
package redirect
