"""resilience.testing."""
