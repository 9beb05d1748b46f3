"""pytest plugin of resilience (entry point ``pytest11: resilience``).

Fixtures for users' own suites and ours: a fake clock, fault proxies, firewall faults
and real servers. The fixture modules import no driver at import time; each fixture
imports what it needs when it runs.
"""

from __future__ import annotations

from resilience.testing._core_fixtures import *  # noqa: F403
from resilience.testing._fault_fixtures import *  # noqa: F403
from resilience.testing._server_fixtures import *  # noqa: F403
