"""The fan-out's limiter and circuit breaker: decisions on recorded round trips, then runs against the lab.

The unit tests replay sequences of (sent, answered) times: the limiter reads no clock, so every decision
is exact. The lab runs check what matters end to end: every item done exactly once through a latency
change and an outage, and a bounded number of calls to an ENT that keeps failing.
"""

from __future__ import annotations

import logging
import math
import random
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from pcnctl.ent import roundtrip
from pcnctl.ent.edifice.driver import EdificeDriver
from pcnctl.ent.fanout import CircuitOpenError, Fanout, Outcome
from pcnctl.ent.http import HttpClient, RetryPolicy
from pcnctl.ent.limiter import Breaker, BreakerSettings, Decision, Limiter, LimiterSettings, RateCap
from pcnctl.errors import ExitCode, TransportError
from pcnctl.ops.targets import read_refs_file
from tests.conftest import Cli, Lab, driver_for
from tests.test_accounts import log_counts, students

SINGLE = RetryPolicy(attempts=1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replay(
    limiter: Limiter,
    clock: Clock,
    rtt: float | Callable[[Limiter], float],
    seconds: float,
    *,
    client: float = math.inf,
    spread: tuple[float, ...] = (1.0,),
) -> list[Decision]:
    """Keep calls in flight for ``seconds`` against an ENT answering in ``rtt``; the decisions.

    The client keeps ``limit`` calls in flight, or ``client`` when it cannot fill more (a busy machine, a
    slow producer). Answers trickle in evenly, as they do from a busy server: each slot is refilled when its
    answer comes. ``spread`` scales the round trips in turn (an ENT whose calls differ; mean 1).
    """
    decisions = []
    end = clock.now + seconds
    turn = 0
    while clock.now < end:
        step = rtt(limiter) if callable(rtt) else rtt
        flight = max(1, int(min(limiter.limit, client)))
        for _ in range(flight):
            factor = spread[turn % len(spread)]
            turn += 1
            clock.now += step / flight
            decision = limiter.on_answer(clock.now - step * factor, clock.now)
            if decision is not None:
                decisions.append(decision)
    return decisions


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


def warmed(client: float, rtt: float = 0.02) -> tuple[Limiter, Clock]:
    """A limiter after 5 s against a healthy ENT, with a client that fills ``client`` slots at most."""
    clock = Clock()
    limiter = Limiter(LimiterSettings(initial=4, maximum=32))
    replay(limiter, clock, rtt, 5.0, client=client)
    return limiter, clock


def test_healthy_ent_and_a_client_that_fills_every_slot_grow_to_the_maximum() -> None:
    clock = Clock()
    limiter = Limiter(LimiterSettings(initial=4, maximum=32))
    decisions = replay(limiter, clock, 0.02, 5.0)
    assert set(actions(decisions)) == {"increase", "hold"}
    limits = [d.limit for d in decisions]
    assert limits == sorted(limits) and limits[-1] == 32.0
    reached = next(d.at for d in decisions if d.limit == 32.0)
    assert reached - 100.0 <= 3.0  # about fifteen windows of 0.2 s
    assert decisions[-1].in_use == pytest.approx(32.0)
    assert limiter.use.typical == pytest.approx(0.02)  # the mean round trip of the first, light windows


def test_limit_stays_within_a_tenth_and_one_call_of_what_the_run_fills() -> None:
    limiter, clock = warmed(client=10)  # the client keeps 10 calls at the ENT, whatever the limit
    settled = replay(limiter, clock, 0.02, 5.0, client=10)
    assert all(d.in_use == pytest.approx(10.0) for d in settled)
    assert all(d.limit == pytest.approx(1.1 * 10 + 1) for d in settled)  # 12 slots, not 32
    assert set(actions(settled)) == {"hold"}


def test_slots_the_run_stops_filling_are_trimmed() -> None:
    limiter, clock = warmed(client=math.inf)
    assert limiter.limit == 32
    trimmed = replay(limiter, clock, 0.02, 3.0, client=5)  # the tail of a run, or a busy client
    assert "trim" in actions(trimmed) and "decrease" not in actions(trimmed)
    assert limiter.limit == int(1.1 * 5 + 1) and limiter.min_rtt == pytest.approx(0.02)
    assert limiter.use.typical == pytest.approx(0.02)  # fewer calls, no faster answers: the same ENT


def test_growth_resumes_when_the_client_can_fill_more() -> None:
    limiter, clock = warmed(client=10)
    assert limiter.limit == 12
    grown = replay(limiter, clock, 0.02, 3.0, client=20)
    assert actions(grown)[1:4] == ["increase"] * 3 and "decrease" not in actions(grown)
    assert max(d.limit for d in grown) < 24  # no further than a tenth and one call above the new use
    assert limiter.limit == 23 and grown[-1].in_use == pytest.approx(20.0)


def test_rise_cuts_in_flight_to_less_than_half_of_the_level_before() -> None:
    limiter, clock = warmed(client=13)  # 20 ms, the client the bottleneck: 13 in use, limit 15.3
    assert limiter.limit == 15
    rise = replay(limiter, clock, 0.1, 1.0)  # then the ENT answers in 100 ms, for everyone
    cut = rise[actions(rise).index("decrease")]
    assert cut.limit_before == pytest.approx(1.1 * 13 + 1) and cut.sampled_rtt == pytest.approx(0.1)
    assert cut.limit == pytest.approx(0.4 * 13)  # 40 % of the 13 calls in use before, not of the limit
    assert int(cut.limit) <= 13 / 2
    assert cut.at - rise[0].at <= 0.2  # within the first slow flight


def test_slower_ent_never_gets_more_calls_than_it_had_before() -> None:
    limiter, clock = warmed(client=13)
    rise = replay(limiter, clock, 0.1, 30.0)  # the client could now fill every slot: 32
    first = actions(rise).index("decrease")  # (the window open at the rise may close first, unmoved)
    assert first <= 1 and actions(rise)[first : first + 2] == ["decrease", "rebase"]
    rebase = rise[first + 1]
    # The ceiling: 85 % of the 13 calls in use before, in whole calls (the client's count errs).
    assert rebase.min_rtt == pytest.approx(0.1) and rebase.ceiling == 11
    after = rise[first + 1 :]
    assert max(d.limit for d in after) == 11  # back to the level before, never above
    assert limiter.limit == 11  # and there it stays: 110 answers/s at 100 ms
    back = next(d for d in after if d.limit == 11)
    assert back.at - rise[first].at <= 1.0  # climbing back, only the ceiling bounds the growth


def test_ceiling_is_lifted_once_the_ent_is_as_fast_as_before() -> None:
    limiter, clock = warmed(client=13)
    replay(limiter, clock, 0.1, 5.0)
    assert limiter.ceiling == 11
    replay(limiter, clock, 0.05, 3.0)  # faster, but still more than twice as slow as before the rise
    assert limiter.ceiling == 11 and limiter.limit == 11
    fall = replay(limiter, clock, 0.02, 4.0)
    assert fall[0].action == "rebase" and limiter.ceiling is None
    assert limiter.limit == 32 and set(actions(fall[1:])) == {"increase", "hold"}


def test_rise_at_a_slow_ent_cuts_then_recovers_within_a_few_round_trips() -> None:
    limiter, clock = warmed(client=math.inf, rtt=0.1)
    assert limiter.limit == 32
    rise = replay(limiter, clock, 0.5, 12.0)
    first = actions(rise).index("decrease")
    assert first <= 1 and actions(rise)[first : first + 2] == ["decrease", "rebase"]
    cut = rise[first]
    assert cut.limit == pytest.approx(32 * 1.5 * 0.11 / 0.5)  # the deeper the rise, the deeper the cut
    assert limiter.limit == 27 and limiter.ceiling == round(0.85 * 32)
    recovered = next(d.at for d in rise if d.limit >= 0.8 * 32)
    assert recovered - cut.at <= 3.0


def test_answers_to_calls_sent_before_a_cut_do_not_cut_again() -> None:
    limiter, clock = warmed(client=math.inf)
    sent = clock.now
    made = []
    for _ in range(64):  # a slow flight: the window open at the rise closes, the next one cuts
        clock.now += 0.01
        made.append(limiter.on_answer(sent, clock.now))
    judged = [d for d in made if d is not None]
    assert actions(judged).count("decrease") == 1 and judged[-1].action == "decrease"
    cut = limiter.limit
    late = []
    for _ in range(40):  # more answers to calls sent before the cut: they say nothing about it
        clock.now += 0.05
        late.append(limiter.on_answer(sent + 0.001, clock.now))
    assert late == [None] * 40 and limiter.limit == cut


def test_queueing_ent_is_cut_and_kept_near_what_it_serves() -> None:
    """An ENT serving ``cap`` calls at once: every call above that queues, the round trip grows with it."""
    cap = [8]

    def ent(lim: Limiter) -> float:
        return 0.05 * max(1.0, lim.limit / cap[0])

    clock = Clock()
    limiter = Limiter(LimiterSettings(initial=4, maximum=32))
    replay(limiter, clock, ent, 4.0)
    assert limiter.limit == int(1.1 * 8 + 1)  # what it serves at once is the use: the queue is not
    cap[0] = 2  # other load takes three quarters of it
    after = replay(limiter, clock, ent, 10.0)
    assert actions(after).count("decrease") == 1 and "rebase" not in actions(after)  # cutting relieved it
    assert limiter.min_rtt == pytest.approx(0.05) and limiter.ceiling is None
    cut = after[actions(after).index("decrease")]
    assert cut.limit == pytest.approx(0.4 * 8)  # 40 % of the 8 calls in use before
    settled = [d for d in after if d.at >= cut.at + 1.0]
    assert all(d.limit == pytest.approx(1.1 * 2 + 1) for d in settled)  # what it serves now allows


def test_moderate_rise_holds_then_probes_the_minimum() -> None:
    limiter, clock = warmed(client=math.inf, rtt=0.1)
    held = replay(limiter, clock, 0.18, 8.0)  # 1.8 x: between healthy and tolerance
    assert set(actions(held[:20])) == {"hold"} and held[0].limit == 32
    at = actions(held).index("probe")
    probe = held[at]
    assert probe.at - held[0].at >= 5.0 and probe.limit == pytest.approx(32 * 0.75)
    # The small cut brought no faster answers: the slower ENT is the norm, at most the 32 it had before.
    assert held[at + 1].action == "rebase" and held[at + 1].min_rtt == pytest.approx(0.18)
    assert limiter.ceiling == round(0.85 * 32) and limiter.limit == 27


def test_round_trips_that_differ_by_nature_count_for_their_mean() -> None:
    """An ENT whose calls take 12.5 or 87.5 ms in turn, without any queue: counted at the fastest, the run
    would look idle and the limit would shrink for ever; counted at the mean, it grows as usual."""
    clock = Clock()
    limiter = Limiter(LimiterSettings(initial=4, maximum=32))
    decisions = replay(limiter, clock, 0.05, 10.0, spread=(0.25, 1.75))
    assert limiter.min_rtt == pytest.approx(0.0125) and limiter.use.typical == pytest.approx(0.05)
    assert "trim" not in actions(decisions) and "decrease" not in actions(decisions)
    assert limiter.limit == 32


def test_drift_of_the_ents_speed_is_followed_after_a_checked_trim() -> None:
    limiter, clock = warmed(client=math.inf)
    assert limiter.use.typical == pytest.approx(0.02)
    drift = replay(limiter, clock, 0.028, 6.0)  # 40 % slower, within the usual band: no cut
    trims = [d for d in drift if d.action == "trim"]
    assert trims and trims[-1].limit <= 0.8 * 32 and "decrease" not in actions(drift)
    # Fewer calls brought no faster answers: calls now count for the new mean, and the limit grows back.
    assert limiter.use.typical == pytest.approx(0.028) and limiter.limit == 32


def test_latency_fall_updates_the_minimum_at_once_and_keeps_growing() -> None:
    clock = Clock()
    limiter = Limiter(LimiterSettings(initial=16, maximum=32))
    replay(limiter, clock, 0.5, 3.0)
    fall = replay(limiter, clock, 0.1, 3.0)
    assert fall and fall[0].min_rtt == pytest.approx(0.1)
    # The window that mixes the last slow answers with the first fast ones re-measures, never cuts.
    assert fall[0].action == "rebase" and "decrease" not in actions(fall) and limiter.limit == 32


def test_throttle_burst_halves_once_per_flight_down_to_the_minimum() -> None:
    limiter, clock = warmed(client=math.inf)
    sent = clock.now
    clock.now += 0.02
    burst = [limiter.on_throttle(sent, clock.now) for _ in range(32)]  # a whole flight answered 429 at once
    assert actions([d for d in burst if d is not None]) == ["throttle"] and limiter.limit == 16
    for _ in range(10):  # each later flight that is throttled again halves again
        clock.now += 1.0
        limiter.on_throttle(clock.now - 0.01, clock.now)
    assert limiter.limit == 1  # never below the minimum
    after = replay(limiter, clock, 0.02, 2.0)
    assert set(actions(after)) == {"increase"}
    assert [d.limit for d in after][:3] == [2.0, 3.0, 4.0]  # after a throttle: one slot per window


def test_failure_eases_off_by_a_third_once_per_flight() -> None:
    limiter, clock = warmed(client=math.inf)
    sent = clock.now
    clock.now += 0.02
    failed = [limiter.on_failure(sent, clock.now) for _ in range(5)]
    assert actions([d for d in failed if d is not None]) == ["failure"] and limiter.limit == int(32 * 0.7)


def test_decision_describes_the_window_for_debug_logs() -> None:
    decision = Decision(1.0, "rebase", 5.2, 5.2, 0.1, 0.104, 9, None, 13.0)
    assert decision.describe() == (
        "limiter rebase: limit 5.2 -> 5.2, min RTT 100 ms, sampled RTT 104 ms over 9 answer(s), ceiling 13.0"
    )
    limiter, clock = warmed(client=10)
    held = replay(limiter, clock, 0.02, 0.5, client=10)[-1]
    assert held.describe().startswith("limiter hold: limit 12.0 -> 12.0, min RTT 20 ms, sampled RTT 20 ms")
    assert held.describe().endswith(", in use 10.0")


def test_rate_cap_follows_what_a_token_bucket_lets_through() -> None:
    clock = Clock()
    cap = RateCap(clock=clock)
    assert cap.rate() is None
    for _ in range(400):  # 200 answers/s for 2 s
        clock.now += 0.005
        cap.on_answer()
    sent = clock.now - 0.03
    assert cap.on_throttle(sent) == pytest.approx(100.0, rel=0.02)  # first throttle: half the recent rate
    assert cap.on_throttle(sent) is None  # the rest of the same flight: already decided
    clock.now += 1.0  # the Retry-After pause: nothing sent
    for _ in range(150):  # then the bucket's burst and its refill, at the cap, until it is dry again
        clock.now += 0.01
        cap.on_answer()
    assert cap.on_throttle(clock.now - 0.03) == pytest.approx(0.9 * 150 / 2.5, rel=0.02)  # 54/s
    clock.now += 2.0
    assert cap.rate() == pytest.approx(54 * 1.1, rel=0.02)  # grows 5 % per second without a throttle
    clock.now += 58.0
    assert cap.rate() is None  # lifted after growing to four times its value


def test_a_call_sent_during_the_pause_does_not_cap_sending_at_one_call_per_second() -> None:
    """An item whose slot was taken before a throttle sends its next call during the pause and meets the
    same dry bucket: the cap stays what the first throttle set."""
    from pcnctl.ent.fanout import Failure, Pacer

    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(200):  # 200 answers/s for 2 s, two calls in flight
        assert pacer.acquire(threading.Event()) and pacer.acquire(threading.Event())
        for _ in range(2):
            clock.now += 0.005
            pacer.answered([(clock.now - 0.009, clock.now)])
    assert pacer.acquire(threading.Event()) and pacer.acquire(threading.Event())
    pacer.failed(clock.now - 0.003, Failure(retryable=True, throttled=True, retry_after=1.0), "429")
    first = pacer.rate_cap.rate()
    assert first == pytest.approx(100.0, rel=0.05)
    clock.now += 0.2  # during the pause, the other item's second call
    pacer.failed(clock.now - 0.001, Failure(retryable=True, throttled=True, retry_after=1.0), "429")
    assert pacer.rate_cap.rate() == pytest.approx(first * (1 + 0.05 * 0.2), rel=0.01)  # grown, not cut to 1


def test_breaker_counts_a_failing_flight_once_backs_off_and_opens() -> None:
    clock = Clock()
    breaker = Breaker(
        BreakerSettings(failures=4, base_delay=0.2, max_delay=1.0), clock=clock, rng=random.Random(1)
    )
    sent = clock.now
    clock.now += 0.01
    first = [breaker.on_failure(sent, "connection refused", f"u{i}") for i in range(32)]
    assert breaker.streak == 1 and first[1:] == [0.0] * 31 and 0.1 <= first[0] <= 0.2
    delays = []
    for i in range(3):  # single probes of other items, each sent after the previous failure
        clock.now += 0.5
        delays.append(breaker.on_failure(clock.now - 0.001, "connection refused", f"v{i}"))
    assert [0.2 <= delays[0] <= 0.4, 0.4 <= delays[1] <= 0.8, 0.5 <= delays[2] <= 1.0] == [True] * 3
    assert breaker.open and breaker.reason == "4 consecutive failures, the last: connection refused"


def test_breaker_one_item_failing_alone_is_not_a_failing_ent() -> None:
    clock = Clock()
    breaker = Breaker(BreakerSettings(failures=4, silence=10.0), clock=clock, rng=random.Random(1))
    for _ in range(20):  # the last item left keeps failing: it ends failed, the run is not stopped
        clock.now += 1
        breaker.on_failure(clock.now - 0.1, "500", "only-one")
    assert breaker.streak == 20 and breaker.probing and not breaker.open


def test_breaker_success_resets_and_silence_opens() -> None:
    clock = Clock()
    breaker = Breaker(BreakerSettings(failures=100, silence=10.0), clock=clock, rng=random.Random(1))
    for i in range(5):
        clock.now += 1
        breaker.on_failure(clock.now - 0.1, "500", f"u{i}")
    breaker.on_success()
    assert breaker.streak == 0 and not breaker.probing and not breaker.open
    clock.now += 11
    breaker.on_failure(clock.now - 0.1, "500", "u1")
    assert not breaker.open  # one item alone again
    clock.now += 0.5
    breaker.on_failure(clock.now - 0.1, "500", "u2")
    assert breaker.open and breaker.reason is not None and breaker.reason.startswith("no success for 12 s")


def test_round_trips_are_recorded_per_context_only(lab: Lab) -> None:
    http = HttpClient(lab.url)
    http.request("GET", "/auth/oauth2/userinfo", allow=(401, 302), retry=SINGLE)
    with roundtrip.recording() as trips:
        http.request("GET", "/auth/oauth2/userinfo", allow=(401, 302), retry=SINGLE)
        seen_elsewhere: list[int] = []
        other = threading.Thread(target=lambda: seen_elsewhere.append(len(_record_in_thread(http))))
        other.start()
        other.join()
    assert len(trips) == 1 and trips[0][0] <= trips[0][1]
    assert seen_elsewhere == [1]  # the other thread's recorder saw its own call, not this one


def _record_in_thread(http: HttpClient) -> list[tuple[float, float]]:
    with roundtrip.recording() as trips:
        http.request("GET", "/auth/oauth2/userinfo", allow=(401, 302), retry=SINGLE)
    return trips


# -- against the lab ------------------------------------------------------------------------------------


def lab_driver(lab: Lab, admc: Cli) -> EdificeDriver:
    assert admc("auth", "login").exit_code == 0
    return driver_for("lab")


def block_run(driver: EdificeDriver, ids: list[str], **kwargs: object) -> Fanout[str]:
    def block(uid: str) -> Outcome:
        driver.block_user(uid, True)
        return Outcome(uid, "done")

    return Fanout(block, key=lambda uid: uid, idempotent=True, **kwargs)  # type: ignore[arg-type]


def test_latency_change_mid_run_completes_every_item_once(
    lab: Lab, admc: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pcnctl.ent.fanout")
    driver = lab_driver(lab, admc)
    ids = [uid for uid, _ in students(lab, 400)]
    seen: list[str] = []

    def on_outcome(outcome: Outcome) -> None:
        seen.append(outcome.key)
        if len(seen) == 100:
            lab.knobs(latency_ms=60)  # the ENT becomes slower mid-run (lab latency is per request)
        if len(seen) == 300:
            lab.knobs(latency_ms=0)

    fanout = block_run(driver, ids, on_outcome=on_outcome, max_concurrency=16)
    report = fanout.run(ids)
    assert Counter(o.status for o in report.outcomes) == {"done": 400}
    assert sorted(seen) == sorted(ids)
    assert log_counts(lab, "block") == dict.fromkeys(ids, 1)  # each account blocked exactly once
    assert report.decisions and report.peak_concurrency <= 16
    assert all(1 <= d.limit <= 16 for d in report.decisions)
    logged = [r.getMessage() for r in caplog.records if r.name == "pcnctl.ent.fanout"]
    assert len(logged) >= len(report.decisions)  # --debug shows every window's state
    assert all(re.search(r"limit [\d.]+ -> [\d.]+, min RTT \d+ ms, sampled RTT \d+ ms", m) for m in logged)


def test_two_second_outage_ends_with_every_item_done_and_few_calls_during_it(lab: Lab, admc: Cli) -> None:
    driver = lab_driver(lab, admc)
    ids = [uid for uid, _ in students(lab, 300)]
    count = [0]
    timers: list[threading.Timer] = []

    def on_outcome(_outcome: Outcome) -> None:
        count[0] += 1
        if count[0] == 100:
            lab.knobs(fail_match="/auth/block/")
            timer = threading.Timer(2.0, lambda: lab.knobs(fail_match=""))
            timers.append(timer)
            timer.start()

    fanout = block_run(driver, ids, on_outcome=on_outcome, breaker=BreakerSettings(failures=12))
    report = fanout.run(ids)
    timers[0].join()
    faults = lab.counters()["faults"]
    assert Counter(o.status for o in report.outcomes) == {"done": 300}
    assert log_counts(lab, "block") == dict.fromkeys(ids, 1)
    # One flight in progress when the outage began, then a single probe per backoff step.
    assert 1 <= faults <= 32 + 12
    assert report.calls == 300 + faults and report.retries == faults


def test_dead_ent_gets_a_bounded_number_of_calls_and_every_item_is_reported(lab: Lab, admc: Cli) -> None:
    driver = lab_driver(lab, admc)
    ids = [uid for uid, _ in students(lab, 200)]
    lab.knobs(fail_rate=1.0)
    outcomes: list[Outcome] = []
    fanout = block_run(
        driver, ids, on_outcome=outcomes.append, breaker=BreakerSettings(failures=5, base_delay=0.05)
    )
    with pytest.raises(CircuitOpenError) as raised:
        fanout.run(ids)
    assert raised.value.exit_code == ExitCode.UNAVAILABLE
    assert "5 consecutive failures" in raised.value.message
    faults = lab.counters()["faults"]
    assert faults <= 4 + 5  # the first flight (the initial limit), then one probe at a time
    assert sorted(o.key for o in outcomes) == sorted(ids) and {o.status for o in outcomes} == {"failed"}
    not_attempted = [o for o in outcomes if o.detail.startswith("not attempted")]
    assert len(not_attempted) >= 200 - faults
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]


def test_unreachable_ent_gets_a_bounded_number_of_calls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpClient(f"http://127.0.0.1:{port}")
    calls = [0]

    def call(uid: str) -> Outcome:
        calls[0] += 1
        http.request("PUT", f"/auth/block/{uid}", json={"block": True}, retry=SINGLE)
        return Outcome(uid, "done")

    fanout = Fanout(call, key=lambda u: u, idempotent=True, breaker=BreakerSettings(base_delay=0.02))
    with pytest.raises(CircuitOpenError) as raised:
        fanout.run([f"u{i}" for i in range(1000)])
    assert isinstance(raised.value, TransportError) and "connection refused" in raised.value.message
    assert calls[0] <= 4 + 6
    report = raised.value.report
    assert len(report.outcomes) == 1000 and report.stopped is not None


def test_block_stopped_by_a_failing_ent_exits_5_and_resumes(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    admc.open_incidents("INC-CB")
    targets = students(lab, 30)
    ids = tmp_path / "ids.txt"
    ids.write_text("id\n" + "".join(f"{i}\n" for i, _ in targets))
    lab.knobs(fail_match="/block")  # PUT /auth/block/:id and the ADMC's PUT /auth/users/block
    result = admc(
        "accounts",
        "block",
        "--from-file",
        str(ids),
        "--max",
        "30",
        "--batch-size",
        "3",
        "--yes",
        "--incident",
        "INC-CB",
    )  # ten batches of three: enough different items for the circuit to open
    assert result.exit_code == 5 and "stopped sending to the ENT" in result.stderr
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]
    lab.knobs(fail_match="")
    resumed = admc("incident", "resume", "INC-CB")
    assert resumed.exit_code == 0, resumed.stderr
    assert log_counts(lab, "block") == {uid: 1 for uid, _ in targets}


@pytest.mark.parametrize("header", ["id", "ID", "login"])
def test_one_column_csv_header_is_not_an_account(tmp_path: Path, header: str) -> None:
    path = tmp_path / "refs.csv"
    path.write_text(f"{header}\nabc-1\nabc-2\n", encoding="utf-8")
    assert read_refs_file(path) == ["abc-1", "abc-2"]
    plain = tmp_path / "plain.txt"
    plain.write_text("abc-1\nabc-2\n", encoding="utf-8")
    assert read_refs_file(plain) == ["abc-1", "abc-2"]
