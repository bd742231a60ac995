#!/bin/sh
# agentauth transparent egress interception (iptables). Every TCP connection that a process other than the egress
# sidecar opens to a non-loopback IPv4 address is redirected to the sidecar's transparentListen port; the
# sidecar recovers the original destination (SO_ORIGINAL_DST) and picks the route for it. The sidecar's own
# connections (to tools' ingress sidecars, the controller) are left alone by their uid, which is what keeps them
# from looping back into it. Loopback is left alone, so the agent still reaches local services and the sidecar.
# The rule lives in a chain of its own, AGENTAUTH_OUTPUT, so removing it touches nothing else.
#
#   SIDECAR_UID=1337 TRANSPARENT_PORT=15002 ./agentauth-iptables.sh install
#   ./agentauth-iptables.sh remove
#
# test/netns runs this script as it is.
set -eu

case "${1:-}" in
install)
	: "${SIDECAR_UID:?set SIDECAR_UID to the uid the egress sidecar runs as}"
	: "${TRANSPARENT_PORT:?set TRANSPARENT_PORT to the sidecar egress.transparentListen port}"
	iptables -t nat -N AGENTAUTH_OUTPUT
	iptables -t nat -A AGENTAUTH_OUTPUT -p tcp ! -d 127.0.0.0/8 -m owner ! --uid-owner "$SIDECAR_UID" \
		-j REDIRECT --to-ports "$TRANSPARENT_PORT"
	iptables -t nat -A OUTPUT -p tcp -j AGENTAUTH_OUTPUT
	;;
remove)
	iptables -t nat -D OUTPUT -p tcp -j AGENTAUTH_OUTPUT
	iptables -t nat -F AGENTAUTH_OUTPUT
	iptables -t nat -X AGENTAUTH_OUTPUT
	;;
*)
	echo "usage: SIDECAR_UID=<uid> TRANSPARENT_PORT=<port> $0 install | $0 remove" >&2
	exit 2
	;;
esac
