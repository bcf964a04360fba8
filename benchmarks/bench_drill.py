"""The reference drill end to end: a wave at the scale of a large ENT, answered by the shipped playbook.

``pcnctl lab drill --scenario reference``: the ``paris`` preset (800 schools, about 300,000 users), 200
hijacked student accounts in 50 schools of which half never send, 300 pupils logging in through the school
network the attacker also uses, a server with 20 ms latency and a capacity of 300 requests/s (the wave's own
requests count against it). Goals: containment (every hijacked account blocked and student messaging cut)
within 60 s of the response's start; every hijacked account blocked; no innocent account blocked; no threat
delivered after containment. Also reported: the response's calls against the calls that did the work (the
rest met a 429 or a fault and were retried), and how long the containment's calls take at the server's
capacity, a floor no client can beat. Seeding the paris preset takes a minute or more: one run is measured.
Writes its section of docs/benchmarks.md. Not a test.

    python benchmarks/bench_drill.py [--scenario reference] [--messages N] [--fault-rate F]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from _lab import write_section

GOAL_S = 60.0


def main() -> None:
    from pcnctl.lab import drill

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="reference", choices=sorted(drill.SCENARIOS))
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--fault-rate", type=float, default=None)
    args = parser.parse_args()
    plan = drill.scenario(args.scenario, messages=args.messages, fault_rate=args.fault_rate)
    with tempfile.TemporaryDirectory(prefix="pcnctl-bench-drill-") as tmp:
        started = time.perf_counter()
        steps: list[tuple[str, float]] = []
        report = drill.run(
            Path(tmp) / "drill",
            plan,
            on_step=lambda s: steps.append((s.id, time.time())),
        )
        total = time.perf_counter() - started
    ttc = report.time_to_containment
    values = {r["measure"]: r["value"] for r in report.rows()}
    verdict = "met" if ttc is not None and ttc <= GOAL_S else "NOT met"
    rows = [
        "| measure | result | goal |",
        "|---|---|---|",
        f"| time from response start to containment | {values['time from response start to containment']} "
        f"| ≤ {GOAL_S:.0f} s ({verdict}) |",
        f"| hijacked accounts blocked | {values['hijacked accounts blocked']} (senders "
        f"{values['senders blocked']}, silent {values['silent accounts blocked']}) | all |",
        f"| innocent accounts blocked | {report.innocents_blocked} | none |",
        f"| threats delivered after containment | {report.threats_after_containment} | 0 |",
        f"| threats before / after the response started | {report.threats_before_response} / "
        f"{report.threats_after_response} | |",
        f"| messages purged, copies left | {values['messages purged']}, {report.copies_left} | all, 0 |",
        f"| affected schools exported | {values['affected schools (export = ground truth)']} | match |",
        f"| calls by the response (to containment) | {values['calls by the response (to containment)']} | |",
        f"| calls answered 429 / 5xx | {values['calls answered 429 / failed (5xx)']} | |",
        f"| calls made / calls that did the work | {report.overhead} | |",
        f"| containment's calls at the ENT's capacity | {report.floor} | |",
        f"| requests the ENT served meanwhile (wave included), 429s | "
        f"{values['requests the ENT served (wave included), 429s']} | |",
        f"| verdict | {'CONTAINED' if report.contained else 'NOT CONTAINED'} | CONTAINED |",
    ]
    start = report.response_started_at
    timeline = ", ".join(f"{step} +{at - start:.1f} s" for step, at in steps)
    body = (
        "## The reference drill (hunt, block, cut, purge)\n\n"
        f"`python benchmarks/bench_drill.py` on {platform.node()} ({os.cpu_count()} cores): scenario "
        f"`{args.scenario}` (preset `{plan.preset}`, {plan.hijacked} hijacked accounts of which "
        f"{plan.senders} send, {plan.schools} schools, {plan.messages} threats at {plan.rate:g}/s, "
        f"{plan.innocent} pupils behind the proxy the attacker shares; server latency "
        f"{plan.latency_ms:g} ms, "
        f"capacity {plan.capacity:g} requests/s, fault rate {plan.fault_rate:g}), one run, "
        f"{total:.0f} s in all with the seeding.\n\n"
        + "\n".join(rows)
        + f"\n\nSteps done (from the response's start): {timeline}.\n"
    )
    write_section("drill", body)
    print(body)


if __name__ == "__main__":
    main()
