"""The unit-reservation service under test: Quart on Hypercorn, PostgreSQL behind it."""
