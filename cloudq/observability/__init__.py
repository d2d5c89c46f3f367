"""Observability: what a running cloudq deployment tells about itself (metrics, tracing), built on
what the runtimes already hold, so none of it costs a cloud request per task."""
