"""When to ask `/result` about a render next, learnt from what renders of its kind took.

RunComfy has no webhooks: every poll is a request against an undocumented rate limit, and
every second between a render's finish and our noticing it keeps a slot idle. Pure
arithmetic over times the caller passes in (an injected clock); nothing here waits.

The model, per group (one model and the parameters that drive its render time):
- Render time T counts from when the render could begin (submit, or the last time it was
  seen queued). Its hazard h(t), the chance per second of finishing at age t having not
  finished before, is estimated by occurrence over exposure in a window around t: renders
  seen finishing there (this run's, and earlier nights' weighing half as much every
  `half_life`) over the time renders spent unfinished there, renders still running
  included. So a cohort whose first finishers are in does not look as if all of it
  finishes early. A broad log-uniform prior counts as `prior_weight` renders.
- A job is polled with density sqrt(h(t)) / c: minimising requests (one per interval Δ
  while the job is unfinished) plus λ x delay (Δ/2 on average for a job finishing in it)
  gives Δ = sqrt(2 / (λ h)). The next poll is where the density integrated from the last
  poll reaches 1, within [floor, cap]; c is chosen so the mean delay over the renders seen
  meets the target (`delay`, else `share` of the median render time, at least `floor`).
- Cold (nothing, or only old nights, of the group seen): the prior alone would poll every
  job some twenty times before anything is known. Instead the group as a whole makes about
  `probes` polls per `cold_share` of its renders' median age, spread over its renders at
  random phases (and no render more often than every `solo_share` of its age); the first
  finish is news that makes every waiting render plan again.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

DAY = 86400.0
MAX_CANDIDATES = 64  # next-poll ages weighed per age (evenly thinned beyond)
MAX_GRID = 1000  # ages in one group's planning grid


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """The knobs of planning (RunSettings carries the user-settable ones)."""

    floor: float = 1.0  # shortest interval between two polls of one job
    cap: float = 60.0  # longest interval
    delay: float | None = None  # target mean delay (s); None: `share` of the median
    share: float = 0.03
    probes: float = 3.0  # cold: group polls per `cold_share` of the oldest age
    cold_share: float = 0.07
    solo_share: float = 0.15  # cold: no render polled more often than this share of its age
    prior_low: float = 0.2  # the prior: log-uniform over these render times (s)
    prior_high: float = 7200.0
    prior_weight: float = 0.1  # a tenth of a render: enough to keep tails open
    half_life: float = 7 * DAY  # earlier nights' samples weigh half as much per this
    bandwidth: float = 0.15  # the estimation window's half-width, as a share of the age
    min_bandwidth: float = 0.25
    min_events: float = 3.0  # renders seen finishing that a hazard estimate rests on
    known_from: float = 1.0  # sample weight from which a group plans on what it saw
    max_samples: int = 500  # per group; the lightest go first

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.cap:
            raise ValueError(f"need 0 < floor <= cap, got {self.floor}, {self.cap}")
        if self.delay is not None and self.delay <= 0:
            raise ValueError(f"delay must be positive, got {self.delay}")


@dataclass(frozen=True)
class Quantiles:
    """What a group's renders took: p10 / p50 / p90 seconds, over `n` samples."""

    p10: float
    p50: float
    p90: float
    n: int


class RenderTimes:
    """One group's render-time knowledge: samples seen, and renders still running."""

    def __init__(self, policy: PollPolicy) -> None:
        self.p = policy
        self._ages: list[float] = []  # sorted sample render times
        self._weights: list[float] = []  # their weights, same order
        self._order: list[int] = []  # when each was added, same order
        self._count = 0
        self._cw: list[float] = [0.0]  # prefix sums of weights
        self._cwa: list[float] = [0.0]  # ... of weight x age
        self._live: dict[Hashable, float] = {}  # render -> when it could begin
        self._starts: list[float] = []  # those times, sorted
        self._cs: list[float] = [0.0]  # prefix sums of starts
        self._bandwidth = policy.bandwidth * 2.0
        self.news = 0  # grows when polls already planned should be planned again
        self._added = 0  # samples added since this process began
        self._tables: tuple[tuple[int, int, int], _Table] | None = None
        self._policies: tuple[tuple[int, int, int], list[int]] | None = None
        self._lams: tuple[tuple[int, int, int], float] | None = None

    # -- what is known ------------------------------------------------------------------
    def add(self, seconds: float, *, weight: float = 1.0) -> None:
        """A render seen to take `seconds`."""
        if not (math.isfinite(seconds) and seconds > 0 and weight > 0):
            return
        i = bisect_right(self._ages, seconds)
        self._ages.insert(i, seconds)
        self._weights.insert(i, weight)
        self._order.insert(i, self._count)
        self._count += 1
        if len(self._ages) > self.p.max_samples:  # the lightest go, the earliest seen first
            j = min(range(len(self._ages)), key=lambda k: (self._weights[k], self._order[k]))
            del self._ages[j], self._weights[j], self._order[j]
        self._cw = _prefix(self._weights)
        self._cwa = _prefix(w * a for w, a in zip(self._weights, self._ages, strict=True))
        # The window narrows as samples accumulate (n^-1/3, from `bandwidth` at 30).
        shrink = (30.0 / max(1.0, self._cw[-1])) ** (1 / 3)
        self._bandwidth = self.p.bandwidth * min(2.0, max(0.3, shrink))
        self._added += 1
        if self._added & (self._added - 1) == 0:  # the 1st, 2nd, 4th, 8th...: plan again
            self.news += 1

    def remember(self, samples: Iterable[tuple[float, float]], now: float) -> None:
        """Samples of earlier runs as (seconds, when seen), aged by `half_life`."""
        for seconds, at in samples:
            self.add(seconds, weight=0.5 ** (max(0.0, now - at) / self.p.half_life))
        self._added = 0

    def begin(self, render: Hashable, start: float) -> None:
        """A render is running (or could be) since `start`."""
        self.end(render)
        self._live[render] = start
        insort(self._starts, start)
        self._cs = _prefix(self._starts)

    def end(self, render: Hashable) -> None:
        start = self._live.pop(render, None)
        if start is not None:
            del self._starts[bisect_left(self._starts, start)]
            self._cs = _prefix(self._starts)

    @property
    def weight(self) -> float:
        """Total weight of the samples (0: nothing of this group seen yet)."""
        return self._cw[-1]

    @property
    def known(self) -> bool:
        """Enough seen to plan on (a render's worth of weight: a month-old night's samples
        alone are not; the group then probes as if new, and learns again)."""
        return self._cw[-1] >= self.p.known_from

    @property
    def running(self) -> int:
        return len(self._live)

    def typical_age(self, now: float) -> float:
        """Median age of the renders running (0 when none): one render resumed hours
        late does not set the pace of a group's probes."""
        return now - self._starts[len(self._starts) // 2] if self._starts else 0.0

    def oldest(self, now: float) -> float:
        """Age of the longest-running render (0 when none)."""
        return now - self._starts[0] if self._starts else 0.0

    def quantiles(self) -> Quantiles | None:
        """Weighted p10 / p50 / p90 of the samples; None before any."""
        if not self._ages:
            return None
        return Quantiles(
            self._quantile(0.1), self._quantile(0.5), self._quantile(0.9), len(self._ages)
        )

    def _quantile(self, q: float) -> float:
        target = q * self._cw[-1]
        i = min(bisect_left(self._cw, target, lo=1) - 1, len(self._ages) - 1)
        return self._ages[max(i, 0)]

    def target_delay(self, now: float = 0.0) -> float:
        """The mean delay after a finish that polling aims at: `share` of the typical
        render time (the estimate's median, renders still running included: the first
        finishes of a night are its fastest), at least `floor`."""
        if self.p.delay is not None or not self._ages:
            return max(self._wanted_delay(), self._table(now).least_delay if self._ages else 0.0)
        table = self._table(now)
        half = bisect_left([-s for s in table.surv], -0.5)
        typical = table.ages[min(half, len(table.ages) - 1)]
        return max(self._aim(typical), table.least_delay)

    def _wanted_delay(self) -> float:
        """The delay aimed at, from the samples alone (the grid's fineness follows it)."""
        if self.p.delay is not None:
            return max(self.p.floor, self.p.delay)  # polls a floor apart wait floor/2 at best
        q = self.quantiles()
        return self._aim(q.p50 if q is not None else 0.0)

    def _aim(self, typical: float) -> float:
        """`share` of a typical render time, within [floor, cap / 2]."""
        return min(max(self.p.floor, self.p.share * typical), self.p.cap / 2)

    # -- the estimate ----------------------------------------------------------------------
    def hazard(self, t: float, now: float) -> float:
        """Chance per second of finishing at age `t`, for a render unfinished until then.

        The window reaches further back until it holds `min_events` renders seen
        finishing (or spans every age below t): past the last finish seen, the recent
        rate carries on instead of reading as zero."""
        b = max(self.p.min_bandwidth, self._bandwidth * t)
        back = b
        for _ in range(12):
            events, exposure = self._counts(max(0.0, t - back), t + b, now)
            if events >= self.p.min_events or back >= t or events >= self.weight:
                break
            back *= 1.5
        return events / exposure if exposure > 0 else 0.0

    def _counts(self, lo: float, hi: float, now: float) -> tuple[float, float]:
        """Renders finishing in [lo, hi), and the time renders spent unfinished there."""
        width = hi - lo
        # Samples: those finishing in the window are the events; each was exposed from lo
        # to its finish (or the whole window when it finished later).
        i, j = bisect_left(self._ages, lo), bisect_left(self._ages, hi)
        cw, cwa = self._cw, self._cwa
        events = cw[j] - cw[i]
        exposure = (cwa[j] - cwa[i]) - lo * events + width * (cw[-1] - cw[j])
        # Running renders (weight 1): exposed from lo to their age now, within the window.
        k, m = bisect_right(self._starts, now - hi), bisect_right(self._starts, now - lo)
        exposure += width * k + (m - k) * (now - lo) - (self._cs[m] - self._cs[k])
        # The prior, as `prior_weight` renders spread log-uniformly.
        w = self.p.prior_weight
        events += w * (self._prior_cdf(hi) - self._prior_cdf(lo))
        exposure += w * (self._prior_survival_integral(hi) - self._prior_survival_integral(lo))
        return events, exposure

    def _prior_cdf(self, t: float) -> float:
        lo, hi = self.p.prior_low, self.p.prior_high
        if t <= lo:
            return 0.0
        return min(1.0, math.log(t / lo) / math.log(hi / lo))

    def _prior_survival_integral(self, t: float) -> float:
        """Integral of the prior's survival from 0 to t."""
        lo, hi = self.p.prior_low, self.p.prior_high
        if t <= lo:
            return t
        k = math.log(hi / lo)
        u = min(t, hi)
        # d/du [u (ln(hi/u) + 1)] = ln(hi/u)
        return lo + (u * (math.log(hi / u) + 1) - lo * (math.log(hi / lo) + 1)) / k

    def frontier(self, now: float) -> float:
        """The oldest age anything is known at: the longest render seen or running."""
        return max(self._ages[-1] if self._ages else 0.0, self.oldest(now))

    def _key(self, now: float) -> tuple[int, int, int]:
        """When the estimate is worth working out again: every 2 s of clock, and at once
        when what is known has doubled (so a busy night does not redo it per poll)."""
        return (self._added.bit_length(), len(self._ages).bit_length(), int(now // 2))

    def _table(self, now: float) -> _Table:
        """Ages on a grid with the survival and the mean-age integral up to each."""
        key = self._key(now)
        if self._tables is not None and self._tables[0] == key:
            return self._tables[1]
        edge = self.frontier(now)
        horizon = edge + 2 * self.p.cap
        # Steps fine enough for the delay aimed at (a poll can only land on the grid),
        # but never more than MAX_GRID of them.
        fine = max(self._wanted_delay() / 2, horizon / MAX_GRID)
        ts, surv, mean = [0.0], [1.0], [0.0]
        t, cum = 0.0, 0.0
        while t < horizon:
            step = min(max(self.p.floor / 4, 0.02 * t), self.p.cap / 4, fine)
            mid = min(t + step / 2, edge)  # the hazard is held past the frontier
            cum += step * self.hazard(mid, now)
            s = math.exp(-cum)
            mean.append(mean[-1] + (t + step / 2) * (surv[-1] - s))
            t += step
            ts.append(t)
            surv.append(s)
        table = _Table(ts, surv, mean, 2 * fine)
        self._tables = (key, table)
        return table

    def _policy(self, now: float) -> list[int]:
        """For each grid age where a job was last seen unfinished, the grid index of the
        poll after it that costs least: requests plus lam x delay (dynamic programming,
        from the oldest age back; intervals within [floor, cap])."""
        key = self._key(now)
        if self._policies is not None and self._policies[0] == key:
            return self._policies[1]
        lam = self._lam(now)
        nxt = _plan(self._table(now), lam, self.p.floor, self.p.cap)
        self._policies = (key, nxt)
        return nxt

    def _lam(self, now: float) -> float:
        """The price of a second of delay, in requests: set so the mean delay of a render
        polled from age 0 meets the target. Found again when the samples have doubled
        (or every minute), not on every sample."""
        key = (self._added.bit_length(), len(self._ages).bit_length(), int(now // 60))
        if self._lams is not None and self._lams[0] == key:
            return self._lams[1]
        table, target = self._table(now), self.target_delay(now)
        lo, hi = 1e-3, 1e4  # more lam, more requests, less delay
        for _ in range(14):
            mid = math.sqrt(lo * hi)
            if _mean_delay(table, _plan(table, mid, self.p.floor, self.p.cap)) > target:
                lo = mid
            else:
                hi = mid
        self._lams = (key, hi)
        return hi

    def step(self, last: float | None, now: float) -> float:
        """The age of the next poll after one at age `last` (None: the first)."""
        table = self._table(now)
        start = 0.0 if last is None else last
        if start >= table.ages[-1]:
            return start + self.p.cap
        i = bisect_right(table.ages, start) - 1
        t = table.ages[self._policy(now)[i]]
        if last is not None:
            t = max(t, last + self.p.floor)
        return min(t, start + self.p.cap)


@dataclass(frozen=True)
class _Table:
    ages: list[float]
    surv: list[float]  # chance of still running at each age
    mean: list[float]  # integral of t dF(t) up to each age
    least_delay: float  # the finest mean delay its grid can deliver


def _plan(table: _Table, lam: float, floor: float, cap: float) -> list[int]:
    ts, surv, mean = table.ages, table.surv, table.mean
    n = len(ts)
    cost = [0.0] * n  # expected cost from each age on, unnormalised (x survival there)
    nxt = list(range(n))
    last = n - 1
    for i in range(n - 2, -1, -1):
        best, arg = math.inf, last
        ti, si, mi = ts[i], surv[i], mean[i]
        first = bisect_left(ts, ti + floor, lo=i + 1)
        end = bisect_right(ts, ti + cap, lo=first)
        for j in range(first, end, max(1, (end - first) // MAX_CANDIDATES)):
            c = si + lam * (ts[j] * (si - surv[j]) - (mean[j] - mi)) + cost[j]
            if c < best:
                best, arg = c, j
        if best == math.inf:  # nothing within reach on the grid: its end
            best = si + lam * (ts[last] * (si - surv[last]) - (mean[last] - mi))
        cost[i], nxt[i] = best, arg
    return nxt


def _mean_delay(table: _Table, nxt: list[int]) -> float:
    """Mean delay after finishing, for a render polled along `nxt` from age 0."""
    ts, surv, mean = table.ages, table.surv, table.mean
    i, total = 0, 0.0
    while nxt[i] != i:
        j = nxt[i]
        total += ts[j] * (surv[i] - surv[j]) - (mean[j] - mean[i])
        i = j
    finished = 1.0 - surv[i]
    return total / finished if finished > 0 else 0.0


def _prefix(values: Iterable[float]) -> list[float]:
    out = [0.0]
    for v in values:
        out.append(out[-1] + v)
    return out


class Planner:
    """Poll times for every job of a run; one `RenderTimes` per group."""

    def __init__(self, policy: PollPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.groups: dict[str, RenderTimes] = {}
        self.rng = rng or random.Random()

    def group(self, key: str) -> RenderTimes:
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = RenderTimes(self.policy)
        return g

    def next_age(self, group: RenderTimes, *, last: float | None, age: float, now: float) -> float:
        """The render age at which to poll next, given the age at the last poll (None:
        never polled) and the age now. Never earlier than now; a poll is due when equal."""
        p = self.policy
        if not group.known:  # cold: the group probes together, at random phases
            typical = group.typical_age(now)
            per_group = max(p.floor, p.cold_share * typical) / p.probes
            per_job = max(per_group * max(1, group.running), p.solo_share * typical)
            interval = min(p.cap, max(p.floor, per_job))
            if last is None:
                return max(age, self.rng.uniform(0.0, interval))
            return max(age, last + interval)
        return max(age, group.step(last, now))

    def queue_wait(self, group: RenderTimes, position: int, concurrency: int) -> float | None:
        """Seconds a job `position` places back in the queue should wait; None unknown."""
        q = group.quantiles()
        if q is None:
            return None
        ahead = position * q.p50 / max(1, concurrency)
        return min(self.policy.cap, max(self.policy.floor, ahead))
