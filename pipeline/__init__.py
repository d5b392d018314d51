"""The order of the load-test steps, called by tasks.py and noxfile.py."""
