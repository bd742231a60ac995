// Package netns is the transparent-interception end-to-end suite. It builds two network namespaces of its own
// joined by a veth pair, runs the egress sidecar and an unmodified curl in one and the tool behind its ingress
// sidecar in the other, redirects the agent's outbound TCP to the sidecar with iptables and with nftables, and
// removes everything afterwards. It needs root, ip, curl and setpriv (and iptables or nft for each variant);
// without them it skips, except under CI=true, where it fails.
package netns
