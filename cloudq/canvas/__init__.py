"""The canvas: signatures composed into workflows (chain, group, chord) that run the same on a
worker, on Lambda and behind a push endpoint: each step's successor is sent as part of the
step's outcome, never by a worker waiting on a result."""
