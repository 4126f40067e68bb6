"""Adaptive poll intervals and the shared back-off, with an injected clock."""

from __future__ import annotations

import random

import pytest

from batcher.pacing import Breaker, PollPlanner
from batcher.retry import Backoff


def test_before_any_render_is_seen_intervals_grow_with_the_wait() -> None:
    p = PollPlanner(fast=1.0, maximum=30.0)
    assert p.interval(elapsed=0, video_seconds=5, position=None) == 1.0
    assert p.interval(elapsed=20, video_seconds=5, position=None) == 5.0
    assert p.interval(elapsed=1000, video_seconds=5, position=None) == 30.0


def test_after_renders_are_seen_it_sleeps_to_the_window_then_polls_briskly() -> None:
    p = PollPlanner(fast=1.0, maximum=30.0)
    for _ in range(10):
        p.observe(45.0, 5)  # 9 s of work per second of video
    assert p.bounds(5) == (45.0, 45.0)
    assert p.interval(elapsed=0, video_seconds=5, position=None) == 30.0  # capped
    assert p.interval(elapsed=30, video_seconds=5, position=None) == 15.0  # to the window
    assert p.interval(elapsed=44.5, video_seconds=5, position=None) == pytest.approx(1.335)
    assert p.interval(elapsed=200, video_seconds=5, position=None) == pytest.approx(30.0)


def test_simulated_requests_per_job_and_detection_delay() -> None:
    """A 30-60 s render after a few were seen: few requests, noticed within ~2 s."""
    rng = random.Random(1)
    p = PollPlanner(fast=1.0, maximum=30.0, concurrency=8)
    for _ in range(20):
        p.observe(rng.uniform(6.0, 12.0) * 5, 5)
    for true_time in (30.0, 45.0, 60.0):
        t, polls = 0.0, 0
        while t < true_time:
            t += p.interval(elapsed=t, video_seconds=5, position=None)
            polls += 1
        assert t - true_time <= 2.0, (true_time, t)
        assert polls <= 35, (true_time, polls)


def test_queue_position_waits_for_the_jobs_ahead() -> None:
    p = PollPlanner(fast=1.0, maximum=120.0, concurrency=4)
    p.observe(40.0, 5)
    assert p.interval(elapsed=0, video_seconds=5, position=8) == pytest.approx(8 * 40 / 4)


def test_breaker_shares_one_back_off_and_resets_on_success() -> None:
    now = [100.0]
    b = Breaker(
        clock=lambda: now[0],
        sleep=None,
        backoff=Backoff(base=1, cap=8),  # type: ignore[arg-type]
        rng=random.Random(0),
    )
    first = b.failure()
    assert 0.5 <= first <= 1.0 and b.is_open
    second = b.failure()
    assert 1.0 <= second <= 2.0
    assert b.failure(retry_after=5.0) == 5.0 and b.open_until == 105.0
    now[0] = 105.1
    assert not b.is_open
    b.success()
    assert b.failures == 0
