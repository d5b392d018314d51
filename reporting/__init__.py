"""Verdict, summary and rendering of a load-test run: record → merge → summarise → render."""
