"""Adaptive concurrency seen from the ENT: calls in flight and answers per second through a loopback proxy.

Starts a lab (``small`` académie) and, in a separate process, an HTTP-aware TCP proxy on 127.0.0.1 that
counts the calls the ENT is working on (a request forwarded, its answer not yet begun) every 50 ms. pcnctl
blocks accounts one call each (``PUT /auth/block/:id``, the ADML path) through the proxy while the lab's
knobs change mid-run:

* ``rise``: latency x5 (20 -> 100 ms, then 100 -> 500 ms in the second case), held, then back down;
* ``capacity``: the lab's rate capacity drops (429 with Retry-After above it).

Ten runs per case. Goals: in flight at the ENT falls by half within 1 s after a rise in
10/10 runs; at the new level, throughput back to at least 80 % of what the ENT can serve (the client's
maximum concurrency over the latency, and never more than the rate before the rise: this machine's
ceiling) within 10 s; after the latency falls back, the earlier rate (90 % of it) within 10 s; 429s at
most 2 % of calls after a capacity drop. Writes the table to docs/benchmarks.md. Not a test.

    python benchmarks/bench_limiter.py [--runs 10] [--cases rise-20 rise-100 capacity] [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
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
    "rise-20": Case("rise-20", "latency_ms", 20, 100, 20, 4.0, 7.0, 10.0),
    "rise-100": Case("rise-100", "latency_ms", 100, 500, 100, 4.0, 8.0, 10.0),
    "capacity": Case("capacity", "capacity", 200, 60, 20, 4.0, 12.0, 0.0),
}


@dataclass
class RunResult:
    half_after: float | None = None  # seconds from the rise until in flight <= half its peak
    peak: int = 0
    before_rate: float = 0.0
    target: float = 0.0
    recover_after: float | None = None
    fall_after: float | None = None
    calls_after_drop: int = 0
    throttled_after_drop: int = 0
    rate_after_drop: float = 0.0
    decisions: int = 0
    cut_after: float | None = None  # seconds from the change to the limiter's first cut or throttle
    flying_before: float = 0.0  # mean calls in flight at the ENT over the 2 s before the rise
    flying_after: float = 0.0  # and from 1 s to 2 s after it


def open_driver(lab: Lab, proxy: Proxy, home: Path) -> Any:
    from pcnctl.config import make_profile

    login = lab.info["accounts"]["adml"][0]["login"]
    profile = make_profile("bench", url=f"http://127.0.0.1:{proxy.port}", login=login)
    return responder(lab, profile, home)


def load_previous(revision: str) -> Any:
    """The fan-out module as it was at ``revision``, to measure the previous controller the same way."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:pcnctl/ent/fanout.py"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise SystemExit(f"cannot read pcnctl/ent/fanout.py at {revision}: {shown.stderr.strip()}")
    module = types.ModuleType("fanout_previous")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(shown.stdout, f"{revision}:pcnctl/ent/fanout.py", "exec"), module.__dict__)
    return module


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
    items = [ids[i % len(ids)] for i in range(40000)]
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
    time.sleep(0.2)
    decisions = getattr(fanout.pacer, "decisions", [])
    result = RunResult(decisions=len(decisions))
    cuts = [d.at for d in decisions if d.at > t_change and d.action in ("decrease", "throttle")]
    result.cut_after = cuts[0] - t_change if cuts else None
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


def measure_rise(proxy: Proxy, case: Case, result: RunResult, t_rise: float, t_back: float) -> None:
    # Halved: at most half the highest count since the rise, and still so 0.2 s later (a single 50 ms dip
    # at a few calls is not a halving).
    samples = proxy.between(t_rise, t_rise + 3.0)
    peak = 0
    for i, (t, flying, *_) in enumerate(samples):
        peak = max(peak, flying)
        following = [s[1] for s in samples[i : i + 5]]
        if len(following) == 5 and max(following) <= peak / 2:
            result.half_after = t - t_rise
            break
    result.peak = peak
    result.flying_before = mean_flying(proxy, t_rise - 2.0, t_rise)
    result.flying_after = mean_flying(proxy, t_rise + 1.0, t_rise + 2.0)
    ceiling = MAX_CONCURRENCY / (case.during / 1000)
    result.target = min(ceiling, result.before_rate)
    settle, back = case.during / 1000, case.before / 1000
    result.recover_after = first_time(proxy, t_rise, settle, t_back, lambda r: r >= 0.8 * result.target)
    if case.after:
        result.fall_after = first_time(
            proxy, t_back, back, t_back + case.after, lambda r: r >= 0.9 * result.before_rate
        )


# -- report ---------------------------------------------------------------------------------------------


def summary(case: Case, runs: list[RunResult]) -> list[str]:
    def met(values: list[float | None], bound: float) -> str:
        ok = sum(1 for v in values if v is not None and v <= bound)
        return f"{ok}/{len(values)}"

    def spread(values: list[float | None]) -> str:
        real = [v for v in values if v is not None]
        if not real:
            return "never"
        missing = len(values) - len(real)
        text = f"{statistics.median(real):.2f} s (max {max(real):.2f})"
        return text + (f", {missing} never" if missing else "")

    if case.knob == "capacity":
        calls = sum(r.calls_after_drop for r in runs)
        throttled = sum(r.throttled_after_drop for r in runs)
        shares = [r.throttled_after_drop / max(1, r.calls_after_drop) for r in runs]
        rates = [r.rate_after_drop / case.during for r in runs]
        return [
            f"| capacity {case.before:g} -> {case.during:g} req/s at {case.latency_ms:g} ms | 429s after the "
            f"drop <= 2 % of calls | {throttled} of {calls} calls = {100 * throttled / max(1, calls):.1f} % "
            f"(worst run {100 * max(shares):.1f} %); answers/s over the new capacity: median "
            f"{statistics.median(rates):.2f} | {sum(1 for s in shares if s <= 0.02)}/{len(runs)} |"
        ]
    label = f"latency {case.before:g} -> {case.during:g} ms"
    peaks = [r.peak for r in runs]
    earlier = statistics.median(r.before_rate for r in runs)
    targets = [r.target for r in runs]
    logged = any(r.decisions for r in runs)  # the previous controller did not record its decisions
    cut = f"the limiter's first cut {spread([r.cut_after for r in runs])} after the rise; " if logged else ""
    return [
        f"| {label} | in flight at the ENT halved within 1 s of the rise | "
        f"{spread([r.half_after for r in runs])}; peak in flight {min(peaks)}-{max(peaks)}; {cut}"
        "mean in flight "
        f"{statistics.median(r.flying_before for r in runs):.1f} before the rise, "
        f"{statistics.median(r.flying_after for r in runs):.1f} 1-2 s after it | "
        f"{met([r.half_after for r in runs], 1.0)} |",
        f"| {label} | 80 % of {statistics.median(targets):.0f} answers/s within 10 s | "
        f"{spread([r.recover_after for r in runs])} after the rise | "
        f"{met([r.recover_after for r in runs], 10.0)} |",
        f"| {label}, then back | 90 % of the earlier rate ({earlier:.0f}/s) within 10 s | "
        f"{spread([r.fall_after for r in runs])} after the fall | "
        f"{met([r.fall_after for r in runs], 10.0)} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--baseline", help="also measure the fan-out of this git revision (latency cases)")
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--proxy", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        asyncio.run(_serve(args.proxy))
        return
    lines: list[str] = []
    previous: list[str] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", "--seed", "small", "--random-seed", "1")
        proxy = Proxy.start(int(lab.url.rsplit(":", 1)[1].strip("/")))
        try:
            driver = open_driver(lab, proxy, Path(tmp) / "home")
            school = driver.list_schools()[0]
            ids = [u.id for u in driver.list_users(school.id, profiles=["Student", "Relative"])]
            for name in args.cases:
                case = CASES[name]
                runs = []
                for number in range(args.runs):
                    r = run_once(lab, proxy, driver, ids, case)
                    runs.append(r)
                    print(f"{name} #{number + 1}: {r}", flush=True)
                lines += summary(case, runs)
            if args.baseline:
                module = load_previous(args.baseline)
                for name in [n for n in args.cases if CASES[n].knob == "latency_ms"]:
                    case = CASES[name]
                    runs = []
                    for number in range(args.baseline_runs):
                        r = run_once(lab, proxy, driver, ids, case, module)
                        runs.append(r)
                        print(f"{name} {args.baseline} #{number + 1}: {r}", flush=True)
                    previous += summary(case, runs)
        finally:
            proxy.stop()
            lab.stop()
    write_results(args, lines, previous, time.monotonic() - began)


def write_results(args: argparse.Namespace, rows: list[str], previous: list[str], elapsed: float) -> None:
    text = [
        "## Adaptive concurrency: calls in flight at the ENT when it slows down or sheds load",
        "",
        f"`python benchmarks/bench_limiter.py --runs {args.runs}"
        f"{f' --baseline {args.baseline}' if args.baseline else ''}` on {platform.machine()} / Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}, {elapsed / 60:.0f} min. One call per "
        f"account (`PUT /auth/block/:id`, an ADML), at most {MAX_CONCURRENCY} in flight, through a loopback "
        "proxy in its own process that counts, every 50 ms, the calls the ENT is working on (request "
        "forwarded, answer not begun) and the answers it gives. A latency case runs 4 s at the first level, "
        "7-8 s at five times it, then 10 s back at the first; the capacity case runs 4 s at 200 req/s, then "
        "12 s at 60 req/s (20 ms latency).",
        "",
        "| case | goal | measured (median, worst) | met |",
        "|---|---|---|---|",
        *rows,
        "",
        "How each figure is read from the proxy's samples: *halved* is the first time the in flight count "
        "is at most half the highest it reached since the rise and stays so for 0.2 s; the *rate* is answers "
        "over a second that begins one round trip (at the new latency) after the change, so that answers to "
        "calls sent before it do not count, and the time is when that second ends. What the "
        "ENT can serve at the new level is the maximum concurrency over the latency (320/s at 100 ms, 64/s "
        "at 500 ms), and never more than the rate measured just before the rise: at 20 ms the two cores "
        "(client, lab, proxy, and other people's work) are the limit, not the ENT. The 429 share counts "
        "every call sent from the drop to the end of the run.",
        "",
        "Notes. At 20 ms this machine (two cores shared by the client, the lab, the proxy and other "
        "people's work), not the lab, limits the rate, so it varies between runs. No cut can come "
        "before the first slow answers: after a rise to 500 ms nothing is known for half a second, "
        "and growth afterwards waits for answers too, one window per round trip. Once the slower ENT "
        "is the new normal, in flight at the ENT rises again to what its throughput needs (Little's "
        "law): the promise is the backing off, then the recovery. The 429s after a capacity drop are "
        "mostly those of the calls in flight when the lab's bucket first ran dry.",
    ]
    if previous:
        text += [
            "",
            f"The previous controller (`--baseline {args.baseline}`: response times against a baseline that "
            "includes the client's CPU time, a 30 % cut per slow answer), measured the same way, "
            f"{args.baseline_runs} runs per case:",
            "",
            "| case | goal | measured (median, worst) | met |",
            "|---|---|---|---|",
            *previous,
        ]
    write_section("limiter", "\n".join(text))


if __name__ == "__main__":
    main()
