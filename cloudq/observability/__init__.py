"""Optional metrics and tracing, wired through cloudq.signals."""
