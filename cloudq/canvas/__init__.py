"""Celery's canvas: signatures, chains, links (and groups and chords), JSON in the envelope."""
