"""Shared test configuration."""

from __future__ import annotations

import os

import pytest


def has_net_admin() -> bool:
    """True when this process may create network namespaces and veth pairs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))  # CAP_NET_ADMIN
    except OSError:
        pass
    return os.geteuid() == 0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # Keep each phase's report on the item so fixtures can dump logs on failure.
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_net_admin():
        return
    skip = pytest.mark.skip(reason="needs CAP_NET_ADMIN (run as root) for network namespaces")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)
