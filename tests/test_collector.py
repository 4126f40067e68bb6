"""The garbage collector paused for a block and put back as it was."""

from __future__ import annotations

import gc

import pytest

from batcher import collector


def test_the_collector_is_off_in_the_block_and_on_again_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), collector.paused():
        assert not gc.isenabled()
        _ = 1 / 0
    assert gc.isenabled()


def test_a_collector_someone_else_paused_stays_paused() -> None:
    gc.disable()
    try:
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
