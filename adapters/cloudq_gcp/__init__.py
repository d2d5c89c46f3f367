"""cloudq on Google Cloud: Pub/Sub broker (``pubsub://PROJECT``), Firestore result store
(``firestore://COLLECTION``) and Cloud Storage claim-checks for oversized bodies.

Importing this package loads no Google client: modules import them when first used, and clients
are created on first call.
"""
