"""Which addresses a plan's webhook may reach: every address its host resolves to is checked;
loopback, private, link-local, multicast, unspecified, reserved and metadata addresses are
refused (also as IPv4-mapped IPv6), unless an allowed network holds them (never metadata)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from activities.webhook_addresses import (
    ALLOW_NETWORKS_ENV,
    AddressRefused,
    HostUnresolved,
    allowed_networks,
    allowed_networks_from_env,
    checked_addresses,
)

HOST = "x.example"
URL = f"https://{HOST}/hooks/T0KEN"
HINT = f"webhooks may not reach it ({ALLOW_NETWORKS_ENV} lists the networks they may)"


def answer(address: str, port: int = 443) -> tuple[Any, ...]:
    """One getaddrinfo answer for ``address``, as the resolver gives it."""
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


def resolving(
    monkeypatch: pytest.MonkeyPatch, host: str, *addresses: str
) -> Callable[..., list[tuple[Any, ...]]]:
    """Make ``host`` resolve to ``addresses`` (other hosts resolve as usual)."""
    real = socket.getaddrinfo

    def fake(name: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if name == host:
            return [answer(a, int(port)) for a in addresses]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("100.64.0.1", "a private address"),  # carrier-grade NAT
        ("100.127.255.254", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.5", "a private address"),
        ("::ffff:169.254.1.1", "a link-local address"),
        ("64:ff9b::a00:5", "a private address"),  # NAT64 of 10.0.0.5
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("192.0.2.1", "a reserved address"),  # documentation
        ("2001:db8::1", "a reserved address"),
    ],
)
def test_an_address_webhooks_may_not_reach_is_refused_naming_host_address_and_kind(
    monkeypatch: pytest.MonkeyPatch, address: str, kind: str
) -> None:
    resolving(monkeypatch, HOST, address)
    with pytest.raises(AddressRefused) as caught:
        checked_addresses(URL)
    assert str(caught.value) == f"host '{HOST}' resolves to {kind}: {HINT}"


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "169.254.170.2"],
)
@pytest.mark.parametrize(
    "allowed", ["", "169.254.0.0/16,fd00::/8", "0.0.0.0/0,::/0", "::ffff:0:0/96"]
)
def test_a_metadata_address_is_refused_even_inside_an_allowed_network(
    monkeypatch: pytest.MonkeyPatch, address: str, allowed: str
) -> None:
    resolving(monkeypatch, HOST, address)
    with pytest.raises(AddressRefused) as caught:
        checked_addresses(URL, allowed_networks(allowed))
    assert str(caught.value) == (
        f"host '{HOST}' resolves to a cloud metadata address: webhooks may never reach it"
    )


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "172.32.0.1", "100.128.0.1"],
)
def test_a_public_address_passes(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    resolving(monkeypatch, HOST, address)
    [(_, _, _, sockaddr)] = checked_addresses(URL)
    assert sockaddr[:2] == (address, 443)


def test_an_allowed_network_passes_and_only_its_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allowed = allowed_networks("10.20.0.0/16,127.0.0.0/8")
    for address in ("10.20.0.5", "::ffff:10.20.0.5", "127.0.0.1"):
        resolving(monkeypatch, HOST, address)
        assert [a[3][0] for a in checked_addresses(URL, allowed)] == [address]
    for address, kind in [("10.21.0.5", "a private address"), ("::1", "a loopback address")]:
        resolving(monkeypatch, HOST, address)
        with pytest.raises(AddressRefused) as caught:
            checked_addresses(URL, allowed)
        assert str(caught.value) == f"host '{HOST}' resolves to {kind}: {HINT}"


def test_every_address_the_host_resolves_to_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving(monkeypatch, HOST, "93.184.216.34", "10.0.0.5")
    with pytest.raises(AddressRefused) as caught:
        checked_addresses(URL)
    assert str(caught.value) == f"host '{HOST}' resolves to a private address: {HINT}"


def test_the_url_port_is_the_one_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving(monkeypatch, HOST, "93.184.216.34")
    assert checked_addresses(f"http://{HOST}:8080/x")[0][3] == ("93.184.216.34", 8080)
    assert checked_addresses(f"http://{HOST}/x")[0][3] == ("93.184.216.34", 80)


@pytest.mark.parametrize(
    ("error", "transient", "message"),
    [
        (socket.EAI_NONAME, False, f"host '{HOST}' does not resolve"),
        (socket.EAI_AGAIN, True, f"host '{HOST}' could not be resolved now (DNS did not answer)"),
    ],
)
def test_a_host_that_does_not_resolve_says_whether_asking_again_may_help(
    monkeypatch: pytest.MonkeyPatch, error: int, transient: bool, message: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(error, "resolver says no")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(HostUnresolved) as caught:
        checked_addresses(URL)
    assert (str(caught.value), caught.value.transient) == (message, transient)


def test_allowed_networks_come_from_the_environment() -> None:
    assert allowed_networks_from_env({}) == ()
    assert allowed_networks_from_env({ALLOW_NETWORKS_ENV: ""}) == ()
    listed = "10.20.0.0/16, 127.0.0.0/8,fd12::/64"
    networks = allowed_networks_from_env({ALLOW_NETWORKS_ENV: listed})
    assert [str(n) for n in networks] == ["10.20.0.0/16", "127.0.0.0/8", "fd12::/64"]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("not-a-network", "is not a network such as 10.20.0.0/16 or fd12::/64"),
        ("10.0.0.0/33", "is not a network such as 10.20.0.0/16 or fd12::/64"),
        ("10.20.0.1/16", "has host bits set (the network is 10.20.0.0/16)"),
    ],
)
def test_a_malformed_allowed_network_is_refused_naming_the_variable_and_entry(
    entry: str, why: str
) -> None:
    with pytest.raises(ValueError) as caught:
        allowed_networks_from_env({ALLOW_NETWORKS_ENV: f"10.20.0.0/16,{entry}"})
    assert str(caught.value) == f"{ALLOW_NETWORKS_ENV}: {entry!r} {why}"
