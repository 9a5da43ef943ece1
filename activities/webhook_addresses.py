"""Which addresses a plan's webhook may reach.

A plan's ``notifications.webhook_url`` is POSTed from inside the worker's network, so a host
that resolves to the worker itself, a private network or the cloud's metadata service is
refused: else whoever may submit a plan could probe internal services and read what they
answered in the release timeline. The platform team lets webhooks reach chosen internal
networks with ``RELMAN_WEBHOOK_ALLOW_NETWORKS``; metadata addresses stay refused even there.

The release's preflight and every delivery attempt use the same check
(:func:`checked_addresses`); a delivery then connects to the addresses checked, never to a
second lookup that DNS could answer differently.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

ALLOW_NETWORKS_ENV = "RELMAN_WEBHOOK_ALLOW_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# What a connection needs of one getaddrinfo answer: family, type, protocol, socket address.
Resolved = tuple[socket.AddressFamily, socket.SocketKind, int, tuple[Any, ...]]

# Instance metadata (AWS, GCP, Azure and others answer at 169.254.169.254; AWS's IPv6 one)
# and AWS's ECS task and EKS pod credential endpoints: each hands out the worker's own
# credentials, so no allowed network lets a webhook reach them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "fd00:ec2::23")
)
# RFC 1918, carrier-grade NAT (RFC 6598) and unique local IPv6 (RFC 4193).
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# NAT64's well-known prefix: a gateway turns 64:ff9b::a.b.c.d into a connection to a.b.c.d.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

log = logging.getLogger(__name__)


class WebhookAddressError(Exception):
    """A webhook's host cannot be used; ``transient`` when asking again may help."""

    transient = False


class AddressRefused(WebhookAddressError):
    """The host resolves to an address webhooks may not reach."""


class HostUnresolved(WebhookAddressError):
    """The host does not resolve (``transient``: DNS did not answer this time)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def allowed_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated CIDR list such as ``10.20.0.0/16,127.0.0.0/8``.

    Raises ValueError naming the entry that is not a network.
    """
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
            continue
        except ValueError:
            pass
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not a network such as 10.20.0.0/16 or fd12::/64"
            ) from None
        raise ValueError(f"{entry!r} has host bits set (the network is {network})")
    return tuple(networks)


def allowed_networks_from_env(environ: Mapping[str, str] = os.environ) -> tuple[IPNetwork, ...]:
    """The internal networks this worker lets plans' webhooks reach
    (``RELMAN_WEBHOOK_ALLOW_NETWORKS``; none when unset).

    Raises ValueError naming the variable and the entry when one is malformed, so a worker
    refuses to start rather than refusing webhooks it was meant to allow.
    """
    try:
        return allowed_networks(environ.get(ALLOW_NETWORKS_ENV, ""))
    except ValueError as exc:
        raise ValueError(f"{ALLOW_NETWORKS_ENV}: {exc}") from None


def _ipv4_inside(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (IPv4-mapped, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """The kind of ``address`` that keeps webhooks from it ("a loopback address"), or None
    when they may reach it: a public address, or one inside an ``allowed`` network (but
    never a metadata address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))  # fe80::1%eth0 is fe80::1 here
    inner = _ipv4_inside(address)
    forms = (address, inner) if inner is not None else (address,)
    if any(form in METADATA_ADDRESSES for form in forms):
        return "a cloud metadata address"
    if any(form in network for form in forms for network in allowed):
        return None
    # Where a connection ends up: the IPv4 address inside an IPv4-mapped or NAT64 one.
    target = inner if inner is not None else address
    if target.is_unspecified:
        return "an unspecified address"
    if target.is_loopback:
        return "a loopback address"
    if target.is_link_local:
        return "a link-local address"
    if target.is_multicast:
        return "a multicast address"
    if any(target in network for network in PRIVATE_NETWORKS):
        return "a private address"
    # Everything else that is not public: documentation and benchmarking ranges, 240/4,
    # the broadcast address, IPv4-compatible and other special-purpose IPv6 blocks.
    if target.is_reserved or not target.is_global:
        return "a reserved address"
    return None


def refusal_message(host: str, kind: str) -> str:
    """Why a webhook may not reach ``host``: the kind of address it resolves to, not the
    address itself (the plan's author would otherwise learn the network's inner layout;
    the worker's log has the address)."""
    if kind == "a cloud metadata address":
        return f"host {host!r} resolves to {kind}: webhooks may never reach it"
    return (
        f"host {host!r} resolves to {kind}: webhooks may not reach it "
        f"({ALLOW_NETWORKS_ENV} lists the networks they may)"
    )


def checked_addresses(url: str, allowed: Sequence[IPNetwork] = ()) -> list[Resolved]:
    """Every address the host of ``url`` resolves to, each one a webhook may reach.

    Raises AddressRefused naming the first address that a webhook may not reach (one is
    enough: a connection may end up at any of them), HostUnresolved when the host does not
    resolve.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused(f"the port of host {host!r} is not a number from 0 to 65535") from None
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        if getattr(exc, "errno", None) == socket.EAI_AGAIN:
            raise HostUnresolved(
                f"host {host!r} could not be resolved now (DNS did not answer)", transient=True
            ) from None
        raise HostUnresolved(f"host {host!r} does not resolve") from None
    found: list[Resolved] = []
    for family, kind, proto, _, sockaddr in answers:
        written = str(sockaddr[0])
        try:
            address = ipaddress.ip_address(written)
        except ValueError:
            raise AddressRefused(f"host {host!r} resolves to something not an IP address") from None
        reason = refusal(address, allowed)
        if reason is not None:
            log.warning("webhook host %r resolves to %s, %s: refused", host, written, reason)
            raise AddressRefused(refusal_message(host, reason))
        found.append((family, kind, proto, sockaddr))
    if not found:
        raise HostUnresolved(f"host {host!r} does not resolve")
    return found
