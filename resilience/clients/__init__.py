"""resilience.clients: one subpackage per datastore over one client base.

:func:`live_clients` lists the clients of this process that are constructed and not
closed (held weakly), for process-wide views such as a status page or fleet control.
"""

from resilience.clients._base import live_clients

__all__ = ["live_clients"]
