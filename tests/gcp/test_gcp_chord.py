"""The canvas (chains, callbacks, groups, chords) on Pub/Sub + Firestore emulators (the canvas contract)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gcp_apps import gcp_app

from cloudq import App
from cloudq.testing import CanvasContract

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(180)]


class TestCanvasOnPubSubAndFirestore(CanvasContract):
    @pytest.fixture
    def chord_app(self, pubsub_emulator, firestore_emulator, project: str, unique: str) -> Iterator[App]:
        application = gcp_app(project, unique)
        yield application
        application.close()
