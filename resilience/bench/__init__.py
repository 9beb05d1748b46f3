"""resilience.bench."""
