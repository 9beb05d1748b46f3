"""``resilience soak``: behaviour over time under seeded faults (docs/soak.md).

:mod:`~resilience.soak.config` holds the settings and the seeded schedules,
:mod:`~resilience.soak.targets` the servers, proxies and clients,
:mod:`~resilience.soak.run` the load and the invariants, :mod:`~resilience.soak.report`
the Markdown and JSON, :mod:`~resilience.soak.cli` the command. Importing this package
imports no driver and starts nothing.
"""
