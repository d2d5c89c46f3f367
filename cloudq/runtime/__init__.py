"""Runtimes: the executor (the only place task code runs) and the container worker."""
