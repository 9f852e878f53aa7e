"""The long-running service: the daemon's scheduled passes, systemd notify and watchdog,
``syncd health`` and the Prometheus metrics. Above the application layer."""
