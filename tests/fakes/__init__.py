"""Local stand-ins for Google services that speak the real protocols (used by tests and demos)."""
