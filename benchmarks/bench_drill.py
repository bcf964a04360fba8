"""The reference drill end to end: a wave at the scale of a large ENT, answered by the shipped playbook.

``pcnctl lab drill --scenario reference``: the ``paris`` preset (800 schools, about 300,000 users), 200
hijacked student accounts in 50 schools of which half never send, 300 pupils logging in through the school
network the attacker also uses, a server with 20 ms latency and a capacity of 300 requests/s (the wave's own
requests count against it). Goals: containment (every hijacked account blocked and student messaging cut)
within 60 s of the response's start; every hijacked account blocked; no innocent account blocked; no threat
delivered after containment. Also reported: the response's calls against the calls that did the work (the
rest met a 429 or a fault and were retried), and how long the containment's calls take at the server's
capacity, a floor no client can beat. Two cases: as is, and with 1 % of requests answered 500. Seeding the
paris preset takes a minute or more: one run per case is measured.
Writes its section of docs/benchmarks.md. Not a test.

    python benchmarks/bench_drill.py [--scenario reference] [--messages N] [--cases reference ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from _lab import write_section

GOAL_S = 60.0


CASES = {"reference": 0.0, "reference, 1 % faults": 0.01}


def main() -> None:
    from pcnctl.lab import drill

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="reference", choices=sorted(drill.SCENARIOS))
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    results = []
    for case in args.cases:
        plan = drill.scenario(args.scenario, messages=args.messages, fault_rate=CASES[case] or None)
        with tempfile.TemporaryDirectory(prefix="pcnctl-bench-drill-") as tmp:
            started = time.perf_counter()
            steps: list[tuple[str, float]] = []
            report = drill.run(Path(tmp) / "drill", plan, environ=os.environ, on_step=partial(_note, steps))
            results.append((case, plan, report, steps, time.perf_counter() - started))
    plan = results[0][1]
    body = (
        "## The reference drill (hunt, block, cut, purge)\n\n"
        f"`python benchmarks/bench_drill.py` on {platform.node()} ({os.cpu_count()} cores): scenario "
        f"`{args.scenario}` (preset `{plan.preset}`, {plan.hijacked} hijacked accounts of which "
        f"{plan.senders} send, {plan.schools} schools, {plan.messages} threats at {plan.rate:g}/s, "
        f"{plan.innocent} pupils behind the proxy the attacker shares; server latency "
        f"{plan.latency_ms:g} ms, capacity {plan.capacity:g} requests/s), one run per case "
        f"({' and '.join(f'{r[4]:.0f} s' for r in results)} in all, most of it seeding).\n\n"
        + _table(results)
        + "".join(_timeline(case, report, steps) for case, _p, report, steps, _t in results)
    )
    write_section("drill", body)
    print(body)


def _note(steps: list[tuple[str, float]], step: Any) -> None:
    steps.append((step.id, time.time()))


def _table(results: list[tuple[str, Any, Any, list[tuple[str, float]], float]]) -> str:
    rows = [
        ("time from response start to containment", "≤ 60 s", _ttc),
        ("hijacked accounts blocked (senders, silent)", "all", _hijacked),
        ("innocent accounts blocked", "none", lambda r: str(r.innocents_blocked)),
        ("threats delivered after containment", "0", lambda r: str(r.threats_after_containment)),
        ("threats before / after the response started", "", _threats),
        (
            "messages purged, copies left",
            "all, 0",
            lambda r: f"{r.messages_purged}/{r.threats_total}, {r.copies_left}",
        ),
        ("affected schools exported (= ground truth)", "match", _export),
        ("calls by the response (to containment)", "", lambda r: f"{r.calls} ({r.calls_to_containment})"),
        ("calls answered 429 / 5xx", "", lambda r: f"{r.calls_throttled} / {r.calls_failed}"),
        ("calls made / calls that did the work", "", lambda r: r.overhead),
        ("containment's calls at the ENT's capacity", "", lambda r: r.floor),
        ("requests the ENT served meanwhile (wave included), 429s", "", _lab),
        ("verdict", "CONTAINED", lambda r: "CONTAINED" if r.contained else "NOT CONTAINED"),
    ]
    head = "| measure | " + " | ".join(r[0] for r in results) + " | goal |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    for label, goal, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r[2]) for r in results) + f" | {goal} |")
    return "\n".join(lines) + "\n"


def _ttc(r: Any) -> str:
    ttc = r.time_to_containment
    return "never" if ttc is None else f"{ttc:.1f} s ({'met' if ttc <= GOAL_S else 'NOT met'})"


def _hijacked(r: Any) -> str:
    return (
        f"{r.hijacked_blocked}/{r.hijacked} ({r.senders_blocked}/{r.senders}, {r.silent_blocked}/{r.silent})"
    )


def _threats(r: Any) -> str:
    return f"{r.threats_before_response} / {r.threats_after_response}"


def _export(r: Any) -> str:
    match = "match" if r.schools_exported == r.schools_expected else "MISMATCH"
    return f"{len(r.schools_exported)} ({match})"


def _lab(r: Any) -> str:
    return f"{r.lab_requests}, {r.lab_throttled}"


def _timeline(case: str, report: Any, steps: list[tuple[str, float]]) -> str:
    start = report.response_started_at
    done = ", ".join(f"{step} +{at - start:.1f} s" for step, at in steps)
    at = dict(steps)
    split = ""
    if {"variants", "hunt", "block-senders", "block-student-messaging"} <= at.keys():
        split = (
            f" The hunt took {at['hunt'] - at['variants']:.1f} s and every account it found was blocked "
            f"{at['block-senders'] - at['hunt']:.1f} s later; the rest of the time to containment is the "
            f"student-messaging block of the schools and its verification "
            f"({at['block-student-messaging'] - at['block-senders']:.1f} s)."
        )
    return f"\nSteps done, {case} (from the response's start): {done}.{split}\n"


if __name__ == "__main__":
    main()
