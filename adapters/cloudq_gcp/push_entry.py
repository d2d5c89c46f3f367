"""``gunicorn cloudq_gcp.push_entry:application``: the name ``cloudq deploy`` prints and deployed
Cloud Run services load, kept stable while the app itself lives in ``push/entry.py``."""

from .push.entry import application

__all__ = ["application"]
