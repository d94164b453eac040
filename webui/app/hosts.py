"""The host names Hearth is served as, for checking each request's Host header.

DNS rebinding points a name the attacker owns at 127.0.0.1: the browser then treats
the attacker's page and Hearth as one origin, and only the Host header (the
attacker's name) tells the request apart. So a request must name this server: a
loopback name, the address it was bound to, a name the user added, and with
--listen this machine's own names. An IP address is accepted as itself when serving
on the network: a page can only reach it under that address, which makes it the
page's origin, not a rebound name."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from webui.config import LOOPBACK_HOSTS, ServerSettings

ANY_HOST = "*"
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def host_name(host_header: str) -> str:
    """"127.0.0.1:7860" -> "127.0.0.1", "[::1]:7860" -> "::1", lower case, no trailing dot."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def machine_names() -> set[str]:
    """This machine's own names (as a LAN peer would type them), best effort: a
    resolver that does not answer leaves the plain host name."""
    names = {socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:
        pass
    names |= {f"{name.split('.', 1)[0]}.local" for name in list(names) if name}  # mDNS
    return {host_name(n) for n in names if n}


@dataclass(frozen=True)
class ServedHosts:
    names: frozenset[str]
    any_ip: bool  # serving on the network: an IP address is its own origin
    any_name: bool  # the user turned the check off ('*')

    @classmethod
    def for_settings(cls, settings: ServerSettings) -> ServedHosts:
        names = {host_name(n) for n in (*LOOPBACK_HOSTS, *settings.allowed_hosts) if n.strip()}
        if settings.host not in WILDCARD_ADDRESSES:
            names.add(host_name(settings.host))
        if settings.listen:
            names |= machine_names()
        return cls(frozenset(names - {ANY_HOST}), any_ip=settings.listen,
                   any_name=ANY_HOST in {n.strip() for n in settings.allowed_hosts})

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        if self.any_name:
            return True
        name = host_name(host_header)
        if name in self.names:
            return True
        address = _ip(name)
        return address is not None and (address.is_loopback or self.any_ip)
