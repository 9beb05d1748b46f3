"""resilience.faults."""
