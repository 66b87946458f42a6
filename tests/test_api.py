"""The library and plug-in surface of ``ftwatch``, pinned (as httpx pins its own):
a name added or dropped here is a change plug-ins and scripts see."""

from __future__ import annotations

import ftwatch


def test_the_public_names_are_these_and_each_resolves() -> None:
    assert ftwatch.__all__ == [
        "DeliveryFailedError",
        "Event",
        "ModelInfo",
        "Notifier",
        "NotifierConfig",
        "NotifierContext",
        "Transition",
        "Until",
        "WaitOutcome",
        "__version__",
        "wait_for",
    ]
    for name in ftwatch.__all__:
        assert getattr(ftwatch, name) is not None
