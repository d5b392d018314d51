"""What runs beside a measured scenario and writes down what it saw.

The service's health and counters (service_watch), CPU per process (cpu_watch), the database
and host every 100 ms (attribution_sampler), the cost per committed operation (scenario_cost)
and the quiet window the measurement needs (quiet_database). Each is a background thread or a
context manager; none knows the pipeline that starts it.
"""
