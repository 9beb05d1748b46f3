"""resilience.servers."""
