"""Fixtures and markers for the multi-node tests (tests/cluster)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: multi-node Ray (ray up over loopback ssh, or a 2-node cluster)"
    )
