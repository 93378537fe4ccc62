"""Every resource translation produces can be encoded to protobuf: a nested ``@type``
whose module is not registered would crash the proxy's stream at push time."""

from __future__ import annotations

import pytest

from gossamer.translate import PUSH_ORDER
from gossamer.xds._encode import Encoder
from translate.test_golden import CASES, _translate_case  # type: ignore[import-not-found]


@pytest.mark.parametrize("case", CASES)
def test_every_golden_resource_encodes(case: str) -> None:
    encoder = Encoder()
    count = 0
    for snapshot in _translate_case(case).values():
        for type_url in PUSH_ORDER:
            for resource in snapshot.of(type_url).values():
                packed = encoder.encode(type_url, resource)
                assert packed.type_url == type_url
                count += 1
    assert count > 0
