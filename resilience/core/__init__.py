"""resilience.core."""
