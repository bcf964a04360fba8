"""Pacing seen from the ENT: calls in flight and answers per second through a loopback proxy.

Starts a lab (``small`` académie) and, in a separate process, an HTTP-aware TCP proxy on 127.0.0.1 that
counts the calls the ENT is working on (a request forwarded, its answer not yet begun) every 50 ms. pcnctl
blocks accounts one call each (``PUT /auth/block/:id``, the ADML path) through the proxy while the lab's
knobs change mid-run:

* ``rise-20`` and ``rise-100``: latency x5 (20 -> 100 ms, 100 -> 500 ms), held 10 s, then back down;
* ``capacity``: the lab's rate capacity drops (429 with Retry-After above it).

Every figure is read at the ENT (the proxy's samples), against the level *before* the change:

* **peak**: the most calls in flight at the ENT from the rise to the end of the hold; goal at most
  1.25 x the mean in flight over the 2 s before the rise;
* **halved**: the time from the rise until calls in flight are at most half that level before, and stay so
  for 0.2 s; goal within 1 s;
* **settled**: mean in flight over the last 3 s of the hold (the new latency is the norm); goal at most
  the level before;
* **throughput**: the time until answers over one second reach 80 % of (in flight before / new latency);
  goal within 10 s;
* after the latency falls back, the time until the earlier rate (90 % of it) is back; goal within 5 s;
* after a capacity drop, 429s at most 2 % of the calls.

Ten runs per case, 10/10 to meet a goal. Writes the tables to docs/benchmarks.md. Not a test.

    python benchmarks/bench_limiter.py [--runs 10] [--cases rise-20 rise-100 capacity] [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _lab import ROOT, Lab, responder, write_section

MAX_CONCURRENCY = 32
SAMPLE = 0.05  # seconds between two proxy samples
PEAK_GOAL = 1.25  # peak in flight after a rise over the level before it
HALF_HOLD = 5  # samples (0.2 s) in flight must stay at or below half the level before

# -- the proxy (runs in its own process, so its CPU time does not slow the client's threads) ------------


class Counts:
    def __init__(self) -> None:
        self.in_flight = 0
        self.answered = 0
        self.sent = 0


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_data: Callable[[], None]
) -> None:
    try:
        while data := await reader.read(65536):
            on_data()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _serve(upstream_port: int) -> None:
    counts = Counts()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        busy = [False]  # no pipelining over keep-alive: at most one call per connection at a time

        def request_data() -> None:
            if not busy[0]:
                busy[0] = True
                counts.in_flight += 1
                counts.sent += 1

        def answer_data() -> None:
            if busy[0]:
                busy[0] = False
                counts.in_flight -= 1
                counts.answered += 1

        await asyncio.gather(_pump(client_r, up_w, request_data), _pump(up_r, client_w, answer_data))
        if busy[0]:
            counts.in_flight -= 1

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    while True:
        await asyncio.sleep(SAMPLE)
        print(f"{time.monotonic():.4f} {counts.in_flight} {counts.answered} {counts.sent}", flush=True)


@dataclass
class Proxy:
    """The proxy process and what it has reported so far: (monotonic time, in flight, answered, sent)."""

    process: subprocess.Popen[str]
    port: int
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)

    @classmethod
    def start(cls, upstream_port: int) -> Proxy:
        process = subprocess.Popen(
            [sys.executable, __file__, "--proxy", str(upstream_port)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        proxy = cls(process, port)
        threading.Thread(target=proxy._read, daemon=True).start()
        return proxy

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            t, flying, answered, sent = line.split()
            self.samples.append((float(t), int(flying), int(answered), int(sent)))

    def between(self, start: float, end: float) -> list[tuple[float, int, int, int]]:
        return [s for s in list(self.samples) if start <= s[0] <= end]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# -- one run --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    knob: str  # latency_ms or capacity
    before: float
    during: float
    latency_ms: float  # for capacity cases: the fixed latency
    warm: float  # seconds before the change
    hold: float  # seconds at the changed level
    after: float  # seconds back at the first level (0: no return)


CASES = {
    "rise-20": Case("rise-20", "latency_ms", 20, 100, 20, 6.0, 10.0, 6.0),
    "rise-100": Case("rise-100", "latency_ms", 100, 500, 100, 6.0, 10.0, 6.0),
    "capacity": Case("capacity", "capacity", 200, 60, 20, 4.0, 12.0, 0.0),
}


@dataclass
class RunResult:
    load: float = 0.0  # the machine's one-minute load average when the run began
    before: float = 0.0  # mean calls in flight at the ENT over the 2 s before the change
    before_rate: float = 0.0  # answers per second over the same 2 s
    peak: int = 0  # most calls in flight at the ENT from the rise to the end of the hold
    half_after: float | None = None  # seconds until in flight <= before / 2 (held 0.2 s)
    settled: float = 0.0  # mean in flight over the last 3 s of the hold
    target: float = 0.0  # before / new latency: the throughput the same calls in flight give
    recover_after: float | None = None  # seconds until 80 % of target
    fall_after: float | None = None  # seconds after the fall until 90 % of before_rate
    cut_after: float | None = None  # seconds from the change to the limiter's first cut or throttle
    calls_after_drop: int = 0
    throttled_after_drop: int = 0
    rate_after_drop: float = 0.0


def open_driver(lab: Lab, proxy: Proxy, home: Path) -> Any:
    from pcnctl.config import make_profile

    login = lab.info["accounts"]["adml"][0]["login"]
    profile = make_profile("bench", url=f"http://127.0.0.1:{proxy.port}", login=login)
    return responder(lab, profile, home)


def _source(revision: str, path: str) -> str | None:
    command = ["git", "-C", str(ROOT), "show", f"{revision}:{path}"]
    shown = subprocess.run(command, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def _module(name: str, source: str, origin: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, origin, "exec"), module.__dict__)
    return module


def load_previous(revision: str) -> Any:
    """The fan-out (and its limiter, when it had one apart) as they were at ``revision``."""
    fanout = _source(revision, "pcnctl/ent/fanout.py")
    if fanout is None:
        raise SystemExit(f"cannot read pcnctl/ent/fanout.py at {revision}")
    limiter = _source(revision, "pcnctl/ent/limiter.py")
    if limiter is not None:
        _module("limiter_previous", limiter, f"{revision}:pcnctl/ent/limiter.py")
        fanout = fanout.replace("from pcnctl.ent.limiter import", "from limiter_previous import")
    return _module("fanout_previous", fanout, f"{revision}:pcnctl/ent/fanout.py")


def run_once(
    lab: Lab, proxy: Proxy, driver: Any, ids: list[str], case: Case, module: Any = None
) -> RunResult:
    from pcnctl.ent import fanout as current
    from pcnctl.ent.fanout import Outcome

    fanout_class = (module or current).Fanout

    def block(uid: str) -> Outcome:
        driver.block_user(uid, True)
        return Outcome(uid, "done")

    base = {"latency_ms": case.latency_ms, "capacity": 0.0}
    base[case.knob] = case.before
    lab.control("/__lab/knobs", base)
    result = RunResult(load=os.getloadavg()[0])
    items = [ids[i % len(ids)] for i in range(100_000)]
    fanout = fanout_class(block, key=lambda u: u, idempotent=True, max_concurrency=MAX_CONCURRENCY)
    worker = threading.Thread(target=fanout.run, args=(items,), daemon=True)
    worker.start()
    time.sleep(case.warm)
    t_change = time.monotonic()
    throttled0 = lab.control("/__lab/state")["counters"]["throttled"]
    lab.control("/__lab/knobs", {case.knob: case.during})
    time.sleep(case.hold)
    t_back = time.monotonic()
    throttled1 = lab.control("/__lab/state")["counters"]["throttled"]
    if case.after:
        lab.control("/__lab/knobs", {case.knob: case.before})
        time.sleep(case.after)
    fanout.cancel.set()
    worker.join(timeout=30)
    lab.control("/__lab/knobs", {"latency_ms": 0, "capacity": 0})
    time.sleep(0.3)
    cuts = [d.at for d in fanout.pacer.decisions if d.at > t_change and d.action in ("decrease", "throttle")]
    result.cut_after = cuts[0] - t_change if cuts else None
    result.before = mean_flying(proxy, t_change - 2.0, t_change)
    result.before_rate = rate(proxy, t_change - 2.0, t_change)
    if case.knob == "latency_ms":
        measure_rise(proxy, case, result, t_change, t_back)
    else:
        during = proxy.between(t_change, t_back)
        result.calls_after_drop = during[-1][3] - during[0][3]
        result.throttled_after_drop = throttled1 - throttled0
        result.rate_after_drop = rate(proxy, t_change + 2.0, t_back)
    return result


def rate(proxy: Proxy, start: float, end: float) -> float:
    """Answers per second at the ENT side between two instants."""
    samples = proxy.between(start, end)
    if len(samples) < 2:
        return 0.0
    return (samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])


def mean_flying(proxy: Proxy, start: float, end: float) -> float:
    samples = proxy.between(start, end)
    return sum(s[1] for s in samples) / len(samples) if samples else 0.0


def first_time(
    proxy: Proxy, start: float, settle: float, end: float, test: Callable[[float], bool]
) -> float | None:
    """Seconds after ``start`` when the one-second answer rate first passes ``test``.

    The second must begin ``settle`` seconds after ``start`` (one round trip at the new level), so that
    answers to calls sent before the change do not count.
    """
    for t, *_ in proxy.between(start + settle + 1.0, end):
        if test(rate(proxy, t - 1.0, t)):
            return t - start
    return None


def halved(proxy: Proxy, start: float, end: float, level: float) -> float | None:
    """Seconds after ``start`` when in flight is at most half ``level`` and stays so for 0.2 s."""
    samples = proxy.between(start, end)
    for i, (t, *_) in enumerate(samples):
        following = [s[1] for s in samples[i : i + HALF_HOLD]]
        if len(following) == HALF_HOLD and max(following) <= level / 2:
            return t - start
    return None


def measure_rise(proxy: Proxy, case: Case, result: RunResult, t_rise: float, t_back: float) -> None:
    result.peak = max(s[1] for s in proxy.between(t_rise, t_back))
    result.half_after = halved(proxy, t_rise, t_back, result.before)
    result.settled = mean_flying(proxy, t_back - 3.0, t_back)
    result.target = result.before / (case.during / 1000)
    settle, back = case.during / 1000, case.before / 1000
    result.recover_after = first_time(proxy, t_rise, settle, t_back, lambda r: r >= 0.8 * result.target)
    if case.after:
        result.fall_after = first_time(
            proxy, t_back, back, t_back + case.after, lambda r: r >= 0.9 * result.before_rate
        )


# -- report ---------------------------------------------------------------------------------------------


def _spread(values: list[float | None], unit: str = " s", digits: int = 2) -> str:
    real = [v for v in values if v is not None]
    if not real:
        return "never"
    missing = len(values) - len(real)
    text = f"{statistics.median(real):.{digits}f}{unit} (worst {max(real):.{digits}f}{unit})"
    return text + (f", {missing} never" if missing else "")


def _met(values: list[float | None], bound: float) -> str:
    return f"{sum(1 for v in values if v is not None and v <= bound)}/{len(values)}"


def rise_rows(case: Case, runs: list[RunResult]) -> list[str]:
    label = f"latency {case.before:g} -> {case.during:g} ms"
    before = [r.before for r in runs]
    peaks = [r.peak / max(r.before, 1e-9) for r in runs]
    settled = [r.settled / max(r.before, 1e-9) for r in runs]
    recover = [r.recover_after for r in runs]
    level = f"{min(before):.1f}-{max(before):.1f}"
    rate = statistics.median(r.before_rate for r in runs)
    return [
        f"| {label} | peak in flight after the rise <= {PEAK_GOAL:g} x before | before {level} in flight "
        f"({rate:.0f} answers/s, median), peak {min(r.peak for r in runs)}-{max(r.peak for r in runs)}: "
        f"{_spread(list(peaks), ' x')} | {_met(list(peaks), PEAK_GOAL)} |",
        f"| {label} | in flight at most half the level before within 1 s | "
        f"{_spread([r.half_after for r in runs])} after the rise (the limiter's first cut "
        f"{_spread([r.cut_after for r in runs])}) | {_met([r.half_after for r in runs], 1.0)} |",
        f"| {label} | in flight once the new latency is the norm <= before | mean over the last 3 s "
        f"{_spread(list(settled), ' x')} | {_met(list(settled), 1.0)} |",
        f"| {label} | 80 % of (before / {case.during:g} ms) answers/s within 10 s | "
        f"{_spread(recover)} after the rise (80 % = {statistics.median(0.8 * r.target for r in runs):.0f}/s,"
        f" median) | {_met(recover, 10.0)} |",
        f"| {label}, then back | 90 % of the earlier rate within 5 s | "
        f"{_spread([r.fall_after for r in runs])} after the fall (earlier rate "
        f"{statistics.median(r.before_rate for r in runs):.0f}/s, median) | "
        f"{_met([r.fall_after for r in runs], 5.0)} |",
    ]


def capacity_rows(case: Case, runs: list[RunResult]) -> list[str]:
    calls = sum(r.calls_after_drop for r in runs)
    throttled = sum(r.throttled_after_drop for r in runs)
    shares = [r.throttled_after_drop / max(1, r.calls_after_drop) for r in runs]
    rates = [r.rate_after_drop / case.during for r in runs]
    label = f"capacity {case.before:g} -> {case.during:g} req/s at {case.latency_ms:g} ms"
    share = f"{throttled} of {calls} calls = {100 * throttled / max(1, calls):.1f} %"
    return [
        f"| {label} | 429s after the drop <= 2 % of calls | {share} (worst run {100 * max(shares):.1f} %); "
        f"answers/s over the new capacity: median {statistics.median(rates):.2f} | "
        f"{sum(1 for s in shares if s <= 0.02)}/{len(runs)} |"
    ]


def summary(case: Case, runs: list[RunResult]) -> list[str]:
    return capacity_rows(case, runs) if case.knob == "capacity" else rise_rows(case, runs)


def measure(
    lab: Lab, proxy: Proxy, driver: Any, ids: list[str], names: list[str], runs: int, module: Any = None
) -> tuple[list[str], list[float]]:
    rows: list[str] = []
    loads: list[float] = []
    for name in names:
        case = CASES[name]
        results = []
        for number in range(runs):
            r = run_once(lab, proxy, driver, ids, case, module)
            results.append(r)
            loads.append(r.load)
            print(f"{name}{' (previous)' if module else ''} #{number + 1}: {r}", flush=True)
        rows += summary(case, results)
    return rows, loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--baseline", help="also measure the fan-out of this git revision (latency cases)")
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument(
        "--nice", type=int, default=-10, help="niceness increment for the bench, lab and proxy (root only)"
    )
    parser.add_argument("--proxy", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        asyncio.run(_serve(args.proxy))
        return
    args.niceness = raise_priority(args.nice)
    previous: list[str] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", "--seed", "small", "--random-seed", "1")
        proxy = Proxy.start(int(lab.url.rsplit(":", 1)[1].strip("/")))
        try:
            driver = open_driver(lab, proxy, Path(tmp) / "home")
            school = driver.list_schools()[0]
            ids = [u.id for u in driver.list_users(school.id, profiles=["Student", "Relative"])]
            rows, loads = measure(lab, proxy, driver, ids, args.cases, args.runs)
            if args.baseline:
                names = [n for n in args.cases if CASES[n].knob == "latency_ms"]
                module = load_previous(args.baseline)
                previous, _ = measure(lab, proxy, driver, ids, names, args.baseline_runs, module)
        finally:
            proxy.stop()
            lab.stop()
    write_results(args, rows, previous, loads, time.monotonic() - began)


def raise_priority(increment: int) -> int:
    """Run ahead of other work on a shared machine (the lab and the proxy inherit it): the figures are
    the pacing's, not the neighbours'. Returns the niceness obtained."""
    try:
        return os.nice(increment)
    except PermissionError:
        return os.nice(0)


def write_results(
    args: argparse.Namespace, rows: list[str], previous: list[str], loads: list[float], elapsed: float
) -> None:
    baseline = f" --baseline {args.baseline}" if args.baseline else ""
    text = [
        "## Pacing: calls in flight at the ENT when it slows down or sheds load",
        "",
        'The policy (README, "How bulk runs pace themselves"): a bulk run never holds more calls at a '
        "slower ENT than it held before the ENT slowed. An ENT slowed by everyone's load (the first day of "
        "remote schooling, April 2021) is overloaded whether or not pcnctl's own calls are the cause, so a "
        "slower ENT first gets fewer of them (at most 40 % of what it had), then at most 85 % of what it "
        "had, never more, until it is as fast as it was. The limit also stays within a tenth (plus one "
        "call) of the calls the run actually keeps busy at the ENT: slots the client cannot fill are not "
        "room the ENT gave, and they would all fill the moment the ENT slowed. That is what the previous "
        "controller did: it grew to its maximum while the client could keep only part of it at the ENT, "
        "and when the ENT slowed, every slot filled and stayed full.",
        "",
        f"`python benchmarks/bench_limiter.py --runs {args.runs}{baseline}` on {platform.machine()} "
        f"({os.cpu_count()} cores) / Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
        f"{elapsed / 60:.0f} min, {args.runs} runs per case. The machine was shared with other work (load "
        f"average {min(loads):.1f}-{max(loads):.1f} when the runs began); the bench, the lab and the proxy "
        f"ran at niceness {args.niceness}. One call per account (`PUT /auth/block/:id`, an ADML), at most "
        f"{MAX_CONCURRENCY} in flight, through a loopback proxy in its own process that counts, every 50 ms, "
        "the calls the ENT is working on (request forwarded, answer not begun) and the answers it gives. "
        "The lab's latency knob delays every request alike, as an ENT slowed for everyone does: fewer "
        "calls do not make it faster. A latency case runs 6 s at the first level, 10 s at five times it, "
        "then 6 s back at the first; the capacity case runs 4 s at 200 req/s, then 12 s at 60 req/s "
        "(20 ms latency; above the capacity the lab answers 429 with Retry-After).",
        "",
        "| case | goal | measured at the ENT (median, worst) | met |",
        "|---|---|---|---|",
        *rows,
        "",
        "How each figure is read from the proxy's samples. *Before* is the mean in flight at the ENT over "
        "the 2 s before the rise. The *peak* is the largest sample from the rise to the end of the 10 s "
        "(the ratio is peak / before). *Halved* is the first sample from which in flight stays at or "
        "below half of *before* for 0.2 s. *Once the new latency is the norm* is the mean over the last 3 s "
        "at the slower level, over *before*. The *rate* is answers over a second that begins one round "
        "trip (at the new latency) after the change, so that answers to calls sent before it do not "
        "count; the time is when that second ends. The 429 share counts every call sent from the capacity "
        "drop to the end of the run.",
        "",
        "Notes. No cut can come before the first slow answers, and within a round trip of a rise every "
        "slot the run holds is at the ENT: the peak is the limit itself, while *before* is the part of it "
        "the ENT saw, the rest of each call's time being the client's own (its HTTP stack, waiting for a "
        "busy CPU). The ratio is therefore set by how much of a call the client spends outside the ENT, "
        "which grows with the machine's load; keeping the limit at what the run keeps at the ENT is what "
        "keeps it near 1. When that share exceeds a fifth of a call (a busy client at 20 ms), the 1.25 goal "
        "is missed though the limit is at the run's use: the table says how often and by how much. At "
        "20 ms this machine (client, lab and proxy on two cores, with other people's "
        "work), not the lab, limits the rate: the run keeps what its answers show it can at the ENT, where "
        "the previous controller held all 32 slots; the price is the throughput before the rise (compare "
        "the answers per second of the two tables), the gain that a slower ENT is not loaded more. After "
        "a rise to 500 ms nothing is known for half a second, and growth waits for answers too (one "
        "window per round trip).",
    ]
    if previous:
        text += [
            "",
            f"The previous controller (`--baseline {args.baseline}`), measured the same way, "
            f"{args.baseline_runs} runs per case:",
            "",
            "| case | goal | measured at the ENT (median, worst) | met |",
            "|---|---|---|---|",
            *previous,
        ]
    write_section("limiter", "\n".join(text))


if __name__ == "__main__":
    main()
