"""The app module the benchmark's ``cloudq worker -A _cloudq_app:app`` processes import.

Broker and results come from CLOUDQ_BROKER / CLOUDQ_RESULTS, set by the benchmark.
"""

from _cloudq import define

from cloudq import App

app = App("bench")
noop = define(app)
