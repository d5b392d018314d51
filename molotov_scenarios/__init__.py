"""Molotov scenarios for the reservation service, their shared helpers and the recorder."""
