"""resilience.clients."""
