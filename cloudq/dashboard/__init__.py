"""``cloudq dashboard``: a web view of queues, tasks, dead letters and workers, with redrive,
purge and revoke behind a token (the ``cloudq[dashboard]`` extra: Starlette, Jinja2, uvicorn).

Pages are rendered on the server and actions are plain HTML forms, so there is no JavaScript
to build or vendor. It talks to the backends only through the App's Broker and ResultStore
protocols (optional capabilities checked with isinstance) and ``cloudq.deadletters`` /
``app.control``, so it works on every broker and store alike.
"""
