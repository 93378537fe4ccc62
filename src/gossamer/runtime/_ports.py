"""Local port allocation without collisions.

A port is handed out once per process lifetime and only after a bind test shows nobody
listens on it. Envoy's listeners set ``enable_reuse_port: false``, so a port that gets
taken between our test and Envoy's bind fails loudly instead of silently sharing traffic.
"""

from __future__ import annotations

import socket

DEFAULT_FIRST_PORT = 20000
DEFAULT_LAST_PORT = 32000
"""Below Linux's default ephemeral range (32768+), so outgoing connections don't collide."""


class PortsExhausted(RuntimeError):
    pass


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``port`` now. Like every server (Envoy, aiohttp, gRPC)
    we set SO_REUSEADDR, so connections lingering in TIME_WAIT do not count as in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    def __init__(self, first: int = DEFAULT_FIRST_PORT, last: int = DEFAULT_LAST_PORT) -> None:
        self._first = first
        self._next = first
        self._last = last
        self._given: set[int] = set()

    def __call__(self) -> int:
        while self._next <= self._last:
            port = self._next
            self._next += 1
            if port not in self._given and port_free(port):
                self._given.add(port)
                return port
        raise PortsExhausted(
            f"no free local port left in {self._first}..{self._last} "
            f"({len(self._given)} handed out to this mesh, the rest in use)"
        )
