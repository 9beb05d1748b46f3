"""pytest plugin of resilience (entry point ``pytest11: resilience``).

Fixtures for users' own suites and ours: a fake clock, fault proxies, firewall faults
and real servers. Each fixture module is imported only by the fixtures that use it, so
loading the plugin imports no driver.
"""

from __future__ import annotations
