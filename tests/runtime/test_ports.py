"""Port allocation never hands out a port someone listens on, nor the same port twice."""

from __future__ import annotations

import socket

import pytest

from gossamer.runtime import PortAllocator, port_free
from gossamer.runtime._ports import PortsExhausted


def test_skips_ports_in_use_and_never_repeats() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not port_free(taken)
        allocate = PortAllocator(taken, taken + 20)
        ports = [allocate() for _ in range(5)]
    assert taken not in ports
    assert len(set(ports)) == 5
    assert all(taken < p <= taken + 20 for p in ports)


def test_exhaustion_is_an_error_not_a_shared_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        allocate = PortAllocator(taken, taken)
        with pytest.raises(PortsExhausted):
            allocate()
