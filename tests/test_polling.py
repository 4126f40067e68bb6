"""Poll planning (polling.py): pure arithmetic over given times, so every case is exact.

Tables for the estimate and the plan, a replay of many renders for the cost/delay
trade-off, and properties over arbitrary samples: a poll is never in the past, intervals
stay within [floor, cap], nothing is NaN.
"""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher.polling import DAY, Planner, PollPolicy, RenderTimes


def warm(samples: list[float], policy: PollPolicy | None = None) -> tuple[Planner, RenderTimes]:
    planner = Planner(policy or PollPolicy(), rng=random.Random(0))
    group = planner.group("g")
    group.remember([(s, 0.0) for s in samples], now=0.0)
    return planner, group


def polls_from_zero(planner: Planner, group: RenderTimes, until: float) -> list[float]:
    """The poll ages a render started at time 0 would see (nothing else changing)."""
    ages: list[float] = []
    last: float | None = None
    while last is None or last < until:
        age = last or 0.0
        last = planner.next_age(group, last=last, age=age, now=age)
        ages.append(last)
    return ages


def uniform(n: int, lo: float, hi: float, seed: int = 5) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(lo, hi) for _ in range(n)]


# -- the estimate ---------------------------------------------------------------------------


def test_the_hazard_of_renders_seen_follows_their_distribution() -> None:
    _, g = warm(uniform(2000, 30, 60))
    assert g.hazard(10.0, 0.0) < 0.002  # nothing finishes this early
    for t in (35.0, 45.0, 52.0):  # uniform on [30, 60]: h(t) = 1 / (60 - t)
        assert g.hazard(t, 0.0) == pytest.approx(1 / (60 - t), rel=0.25)


def test_with_nothing_seen_the_hazard_is_the_broad_prior() -> None:
    g = RenderTimes(PollPolicy(prior_low=1.0, prior_high=1000.0))
    # log-uniform on [1, 1000]: h(t) = 1 / (t ln(1000 / t))
    for t in (5.0, 50.0, 300.0):
        assert g.hazard(t, 0.0) == pytest.approx(1 / (t * math.log(1000 / t)), rel=0.1)


def test_running_renders_count_as_not_finished_yet() -> None:
    """30 renders started together; the 5 that finished by 40 s are not the whole story."""
    g = RenderTimes(PollPolicy())
    for i in range(30):
        g.begin(i, 0.0)
    for i, took in enumerate((31.0, 33.0, 35.0, 37.0, 39.0)):
        g.end(i)
        g.add(took)
    now = 40.0
    # 5 finishes over ~10 s with ~27 renders at risk: about 0.02 per second at 35 s ...
    assert g.hazard(35.0, now) == pytest.approx(5 / (10 * 27.5), rel=0.5)
    # ... and past the last finish (no data yet) the recent rate carries on: not zero.
    assert g.hazard(40.0, now) > 0.005
    # Without the 25 still running, the same samples would say "all done by 40 s".
    alone = RenderTimes(PollPolicy())
    for took in (31.0, 33.0, 35.0, 37.0, 39.0):
        alone.add(took)
    assert alone.hazard(38.0, now) > 3 * g.hazard(38.0, now)


def test_earlier_nights_weigh_half_as_much_per_half_life() -> None:
    g = RenderTimes(PollPolicy(half_life=7 * DAY))
    g.remember([(10.0, 0.0), (20.0, 7 * DAY), (30.0, 14 * DAY)], now=14 * DAY)
    assert g.weight == pytest.approx(0.25 + 0.5 + 1.0)
    q = g.quantiles()
    assert q is not None and q.n == 3 and q.p50 == 30.0  # the newest carries most weight


def test_samples_are_bounded_and_junk_is_ignored() -> None:
    g = RenderTimes(PollPolicy(max_samples=50))
    for s in [float("nan"), -1.0, 0.0, float("inf")]:
        g.add(s)
    assert g.weight == 0
    for i in range(120):
        g.add(float(i + 1))
    assert g.quantiles() is not None and g.quantiles().n == 50  # type: ignore[union-attr]


def test_news_comes_on_the_first_sample_and_at_each_doubling() -> None:
    g = RenderTimes(PollPolicy())
    seen = []
    for i in range(17):
        g.add(10.0 + i)
        seen.append(g.news)
    assert seen == [1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5]  # 1, 2, 4, 8, 16


# -- the delay target ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "policy", "target"),
    [
        ([45.0] * 10, PollPolicy(), 1.35),  # 3% of the typical render
        ([200.0] * 10, PollPolicy(), 6.0),
        ([8.0] * 10, PollPolicy(), 1.0),  # never below the floor
        ([8.0] * 10, PollPolicy(floor=0.2), 0.24),
        ([45.0] * 10, PollPolicy(delay=3.0), 3.0),  # asked for explicitly
        ([], PollPolicy(), 1.0),
    ],
)
def test_the_delay_aimed_at(samples: list[float], policy: PollPolicy, target: float) -> None:
    _, g = warm(samples, policy)
    assert g.target_delay() == pytest.approx(target, rel=0.1)  # of the smoothed median


# -- the plan ----------------------------------------------------------------------------------


def test_a_known_window_is_slept_through_then_polled_more_densely_towards_its_end() -> None:
    planner, g = warm(uniform(500, 30, 60))
    ages = polls_from_zero(planner, g, 60.0)
    assert 27.0 <= ages[0] <= 35.0  # no request before the window opens
    window = [a for a in ages if 30.0 <= a <= 60.0]
    gaps = [b - a for a, b in zip(window, window[1:], strict=False)]
    assert gaps[0] > 2 * gaps[-1]  # the later, the likelier the finish: denser polls
    assert all(1.0 <= gap <= 60.0 for gap in gaps)


@pytest.mark.parametrize(("lo", "hi", "max_requests"), [(30.0, 60.0, 6.5), (4.0, 12.0, 3.5)])
def test_renders_of_a_known_distribution_cost_few_requests_at_the_target_delay(
    lo: float, hi: float, max_requests: float
) -> None:
    planner, g = warm(uniform(500, lo, hi))
    ages = polls_from_zero(planner, g, hi + 5)
    truth = uniform(4000, lo, hi, seed=11)
    requests = [bisect_left(ages, t) + 1 for t in truth]
    delays = [ages[bisect_left(ages, t)] - t for t in truth]
    assert statistics.mean(delays) == pytest.approx(g.target_delay(), rel=0.2)
    assert statistics.mean(requests) <= max_requests


def test_a_cold_group_probes_together_at_random_phases() -> None:
    policy = PollPolicy(floor=1.0, cap=60.0, probes=3.0, cold_share=0.1)
    planner = Planner(policy, rng=random.Random(1))
    g = planner.group("g")
    for i in range(30):
        g.begin(i, 0.0)
    firsts = [planner.next_age(g, last=None, age=0.0, now=0.0) for _ in range(300)]
    assert 0.0 <= min(firsts) < 1.0 and 9.0 < max(firsts) <= 10.0  # 30 renders / 3 probes
    # At 40 s each render asks every 30 x 4 s / 3 = 40 s: the group, about 3 per 4 s.
    assert planner.next_age(g, last=40.0, age=40.0, now=40.0) == pytest.approx(80.0)
    one = Planner(policy).group("one")
    one.begin(0, 0.0)
    # Alone, it is its own probe, but no render is asked more often than every 15% of its
    # age (10% of it over 3 probes would be every 1.3 s).
    assert Planner(policy).next_age(one, last=40.0, age=40.0, now=40.0) == pytest.approx(46.0)


@pytest.mark.parametrize(
    ("position", "concurrency", "wait"), [(0, 4, 1.0), (8, 4, 90.0), (100, 4, 60.0), (3, 1, 60.0)]
)
def test_a_queued_job_waits_about_as_long_as_the_queue_ahead(
    position: int, concurrency: int, wait: float
) -> None:
    planner, g = warm([45.0] * 9)
    assert planner.queue_wait(g, position, concurrency) == pytest.approx(min(wait, 60.0))
    assert planner.queue_wait(RenderTimes(PollPolicy()), position, concurrency) is None


# -- properties --------------------------------------------------------------------------------

ages_st = st.lists(st.floats(0.01, 3000.0), max_size=40)


@settings(max_examples=80, deadline=None)
@given(
    samples=ages_st,
    running=st.lists(st.floats(0.0, 3000.0), max_size=10),
    last=st.one_of(st.none(), st.floats(0.0, 3000.0)),
    extra=st.floats(0.0, 100.0),
    floor=st.floats(0.1, 5.0),
    cap=st.floats(5.0, 300.0),
)
def test_a_poll_is_never_in_the_past_and_intervals_stay_in_bounds(
    samples: list[float],
    running: list[float],
    last: float | None,
    extra: float,
    floor: float,
    cap: float,
) -> None:
    planner = Planner(PollPolicy(floor=floor, cap=cap), rng=random.Random(0))
    g = planner.group("g")
    now = 3000.0
    for s in samples:
        g.add(s)
    for i, started in enumerate(running):
        g.begin(i, started)
    age = (last or 0.0) + extra
    nxt = planner.next_age(g, last=last, age=age, now=now)
    assert math.isfinite(nxt) and nxt >= age
    if last is not None:
        assert nxt >= last + floor - 1e-9
        assert nxt <= max(age, last + cap) + 1e-9
    else:
        assert nxt <= max(age, cap) + 1e-9
    for t in (0.0, 1.0, 30.0, 1000.0):
        h = g.hazard(t, now)
        assert math.isfinite(h) and h >= 0.0


# -- no request storms -----------------------------------------------------------------------


def polls_per_render(planner: Planner, group: RenderTimes, took: float) -> int:
    return bisect_left(polls_from_zero(planner, group, took), took) + 1


def test_a_month_old_night_alone_is_not_taken_for_knowledge() -> None:
    planner = Planner(PollPolicy(), rng=random.Random(0))
    g = planner.group("g")
    g.remember([(300.0, 0.0)], now=28 * DAY)  # one render, four weeks ago: weight 1/16
    assert not g.known
    g.begin(0, 0.0)
    assert polls_per_render(planner, g, 300.0) <= 40  # probes as if new (was 131)
    fresh = Planner(PollPolicy(), rng=random.Random(0))
    f = fresh.group("f")
    f.remember([(300.0, 28 * DAY)], now=28 * DAY)
    assert f.known and polls_per_render(fresh, f, 300.0) <= 15


@pytest.mark.parametrize(
    ("typical", "policy", "most"),
    [
        (3600.0, PollPolicy(cap=60.0), 90),  # hour-long renders: about one poll a minute
        (600.0, PollPolicy(cap=10.0), 75),
        (150.0, PollPolicy(delay=1.0), 30),  # a tight target still stays sane
        (150.0, PollPolicy(delay=0.5), 30),  # below the floor: the floor's best is aimed at
    ],
)
def test_long_renders_and_tight_targets_poll_sparingly(
    typical: float, policy: PollPolicy, most: int
) -> None:
    rng = random.Random(3)
    planner, g = warm([typical * math.exp(rng.gauss(0, 0.1)) for _ in range(200)], policy)
    ages = polls_from_zero(planner, g, typical * 1.3)
    early = [a for a in ages if a < typical * 0.6]
    assert bisect_left(ages, typical) + 1 <= most
    assert len(early) <= 2 + typical * 0.6 / policy.cap  # nothing to learn before the window
