"""Helpers for testing services that use resilience.

``FakeClock`` drives breakers, retries and deadlines without sleeping. The pytest
plugin (``resilience.testing.plugin``, loaded automatically once the package is
installed) adds fixtures for fake clocks, fault proxies, firewall faults and real
servers: see docs/faults.md and docs/servers.md.
"""

from resilience.testing.clock import FakeClock

__all__ = ["FakeClock"]
