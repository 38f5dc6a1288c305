"""What the service tells its operators: Prometheus metrics, OpenTelemetry
traces, and its logs (text or JSON, and the access log)."""
