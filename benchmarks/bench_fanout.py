"""Fan-out against the lab's capacity: how close does bulk blocking run to what the server allows?

Starts a lab (``small`` académie), resolves a few thousand student and parent accounts, then blocks them
through the same core path as ``pcnctl accounts block`` while the lab enforces ``--capacity`` (429 with
Retry-After above it) and optional added latency. Reports achieved blocks/s as a ratio of the capacity,
how many 429s the run drew, and the peak concurrency the limiter (pcnctl.ent.limiter) reached. Writes the
table to docs/benchmarks.md. Not a test: numbers depend on the machine; ratios are what to compare.

    python benchmarks/bench_fanout.py [--accounts 3000] [--capacity 150 400] [--latency-ms 5]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from _lab import Lab, responder, write_section


def run_case(
    lab: Lab, home: Path, accounts: int, capacity: float, latency_ms: float, batch_size: int
) -> dict[str, float]:
    from pcnctl.config import make_profile
    from pcnctl.ops import accounts as ops
    from pcnctl.ops import runner
    from pcnctl.ops.context import RunContext
    from pcnctl.state.incidents import open_incident
    from pcnctl.state.store import StateStore

    lab.control("/__lab/reset")
    profile = make_profile("bench", url=lab.url, login=lab.info["accounts"]["admc"]["login"])
    driver = responder(lab, profile, home)
    users = []
    for school in driver.list_schools():
        users += driver.list_users(school.id, profiles=["Student", "Relative"])
    users = users[:accounts]
    plan = ops.plan("accounts.block", users)
    state = StateStore(Path(tempfile.mkdtemp(prefix="pcnctl-bench-")))
    incident, _ = open_incident(state, None, operator="bench")
    ctx = RunContext.create(
        driver, incident, state, max_concurrency=64, show_progress=False, batch_size=batch_size
    )
    lab.control("/__lab/knobs", {"capacity": capacity, "latency_ms": latency_ms})
    before = lab.control("/__lab/state")["counters"]
    started = time.monotonic()
    result = runner.run(ops.OPERATIONS["accounts.block"], plan, runner.InContext(ctx))
    elapsed = time.monotonic() - started
    after = lab.control("/__lab/state")["counters"]
    lab.control("/__lab/knobs", {"capacity": 0, "latency_ms": 0})
    ctx.close()
    done = result.counts.get("done", 0)
    assert result.report is not None
    rate = done / elapsed
    return {
        "accounts": len(users),
        "done": done,
        "capacity": capacity,
        "latency_ms": latency_ms,
        "elapsed": elapsed,
        "rate": rate,
        "ratio": rate / capacity if capacity else float("nan"),
        "throttled": after["throttled"] - before["throttled"],
        "peak": result.report.peak_concurrency,
        "failed": result.counts.get("failed", 0),
        "calls": result.report.calls,
        "batch": batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--capacity", type=float, nargs="+", default=[150.0, 400.0, 0.0])
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", "--seed", "small", "--random-seed", "1")
        try:
            cases = [(c, 0) for c in args.capacity] + [(c, 50) for c in args.capacity if c]
            for capacity, batch in cases:
                home = Path(tmp) / f"home-{capacity:g}-{batch}"
                row = run_case(lab, home, args.accounts, capacity, args.latency_ms, batch)
                rows.append(row)
                print(
                    f"batch {batch or 'off'}, capacity {capacity:g}/s: {row['done']:.0f} blocks in "
                    f"{row['elapsed']:.1f} s = {row['rate']:.0f}/s, {row['calls']:.0f} calls, "
                    f"{row['throttled']:.0f} x 429, peak concurrency {row['peak']:.0f}, "
                    f"failed {row['failed']:.0f}"
                )
        finally:
            lab.stop()
    lines = [
        "## Fan-out: bulk account blocks against the lab's capacity",
        "",
        f"`python benchmarks/bench_fanout.py --accounts {args.accounts} --capacity "
        f"{' '.join(f'{c:g}' for c in args.capacity)} --latency-ms {args.latency_ms:g}` on "
        f"{platform.machine()} / Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. "
        "The lab answers 429 with Retry-After above its capacity (a token bucket with a one-second burst); "
        "the ratio is achieved blocks per second over that capacity (1.0 = the server's limit, exactly).",
        "",
        "| accounts | route | capacity (req/s) | added latency | time | calls | blocks/s | ratio "
        "| 429s drawn | peak concurrency | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        capacity = f"{r['capacity']:g}" if r["capacity"] else "unlimited"
        ratio = f"{r['ratio']:.2f}" if r["capacity"] else "n/a"
        route = "PUT /auth/block/:id" if not r["batch"] else f"PUT /auth/users/block x{r['batch']:.0f}"
        if r["batch"] and r["capacity"]:
            ratio = f"{r['calls'] / r['elapsed'] / r['capacity']:.2f} (calls)"
        lines.append(
            f"| {r['done']:.0f} | {route} | {capacity} | {r['latency_ms']:g} ms | {r['elapsed']:.1f} s | "
            f"{r['calls']:.0f} | {r['rate']:.0f} | {ratio} | {r['throttled']:.0f} | {r['peak']:.0f} | "
            f"{r['failed']:.0f} |"
        )
    lines += [
        "",
        "With one call per account (the ADML path) the ratio is blocks/s over the capacity; with "
        "batches (the ADMC path) the capacity counts calls, so blocks/s far exceeds it and the ratio "
        "shown is calls/s over the capacity. The `unlimited` row is the ceiling of this machine "
        "(two cores shared by the lab, which "
        "serialises its SQLite writes, and the client): above that rate the lab's own CPU, not its "
        "capacity knob, is the limit, so ratios are meaningful for capacities below it. After a 429 the "
        "fan-out caps its sending rate at what the lab accepted and lets the cap grow by 5 % a second "
        '(README, "How bulk runs pace themselves"): few 429s, at the price of a ratio below 1.0 when a '
        "short run overshoots the capacity early.",
    ]
    write_section("fanout", "\n".join(lines))


if __name__ == "__main__":
    main()
