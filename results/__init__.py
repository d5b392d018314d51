"""Pure metric functions for load-test results: record → merge → summarise (no I/O)."""
