"""The library and plug-in surface of ``ftwatch``, pinned (as httpx pins its own):
a name added or dropped here is a change plug-ins and scripts see."""

from __future__ import annotations

import ftwatch


def test_the_public_names_are_these_and_each_resolves() -> None:
    # As httpx pins its own: a name added or dropped is a decision, not an accident.
    public = "DeliveryFailedError Event ModelInfo Notifier NotifierConfig NotifierContext Transition Until WaitOutcome"
    assert ftwatch.__all__ == [*public.split(), "__version__", "wait_for"]
    for name in ftwatch.__all__:
        assert getattr(ftwatch, name) is not None
