"""The address a request really came from, trusting `X-Forwarded-For` only from our proxies.

Walking the header from the right, each hop added by a trusted proxy is skipped; the first
address not in `TRUSTED_PROXIES` is the client. A client cannot spoof its way past this by
sending its own header, because the trusted proxy appends the address it saw.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(request: Request, trusted_proxies: list[str]) -> str | None:
    peer = request.client.host if request.client else None
    networks = _networks(tuple(trusted_proxies))
    if peer is None or not networks or not _trusted(peer, networks):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
