"""The long-running service: schedules, runs under a lease, health and metrics endpoints."""
