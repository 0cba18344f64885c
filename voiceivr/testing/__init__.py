"""Stand-ins for tests and simulations (never imported by the product core)."""
