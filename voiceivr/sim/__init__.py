"""Simulations and crash tests run against the real code: never imported by the core (an import contract in
pyproject.toml says so)."""
