"""Every test here puts a speaker (or the server) in a network of its own: it needs
network namespaces and iptables (root), and is skipped, saying why, where there are none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlab import NatNetwork, can_make_namespaces

WHY_NOT = can_make_namespaces()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if WHY_NOT is None:
        return
    for item in items:
        if "tests/network/" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=WHY_NOT))


@pytest.fixture(scope="module")
def network() -> Iterator[NatNetwork]:
    """A speaker's namespace behind a NAT router, for the module's tests."""
    made = NatNetwork(block_udp=False)
    try:
        yield made
    finally:
        made.close()
