"""From the first threat to containment with nobody awake: the watcher and a signed policy, against the
attended response, at the reference scale.

``pcnctl lab drill --scenario unattended-reference``: the ``paris`` preset, 200 hijacked student accounts in
50 schools (half never send), 300 pupils behind the proxy the attacker shares, a server with 20 ms latency
and a capacity of 300 requests/s; the watcher (its default 5 s between looks) follows the lab from before
the wave, pages a webhook and runs a policy two administrators signed. Against it, the attended scenario
(``reference`` with the reading model): the playbook started by an operator already at the keyboard when
the twelfth threat lands, the best an attended response can do. Both with the reading model of docs/lab.md
(fixed: the same seed, the same curves).

Goals, unattended: detection within 15 s and containment within 60 s of the first threat; at most 5 % of
the threat copies opened before the purge; no innocent account blocked; no school cut outside those the
threat reached. Also reported, from the reading model alone: the share of a copy's readers who would have
opened it had the purge come 10 minutes, 30 minutes or 2 hours after its delivery, the delays of a person
paged, woken, logged in. Seeding the paris preset takes a minute or more: ``--runs`` runs of each.
Writes its section of docs/benchmarks.md. Not a test.

    python benchmarks/bench_unattended.py [--runs 1] [--messages N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _lab import write_section

DETECT_S, CONTAIN_S, OPENED = 15.0, 60.0, 0.05


def main() -> None:
    from pcnctl.lab import drill

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--messages", type=int, default=None)
    args = parser.parse_args()
    cases = {
        "unattended": drill.scenario("unattended-reference", messages=args.messages),
        "attended (operator at the keyboard)": drill.scenario(
            "reference", messages=args.messages, reading=True
        ),
    }
    results: dict[str, list[Any]] = {name: [] for name in cases}
    started = time.perf_counter()
    for _ in range(args.runs):
        for name, plan in cases.items():
            with tempfile.TemporaryDirectory(prefix="pcnctl-bench-unattended-") as tmp:
                results[name].append(drill.run(Path(tmp) / "drill", plan, environ=os.environ))
    plan = cases["unattended"]
    setup = (
        f"`python benchmarks/bench_unattended.py --runs {args.runs}` on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}: preset "
        f"`{plan.preset}`, {plan.hijacked} hijacked accounts of which {plan.senders} send, {plan.schools} "
        f"schools, {plan.messages} threats tried at {plan.rate:g}/s, {plan.innocent} pupils behind the "
        f"attacker's proxy; server latency {plan.latency_ms:g} ms, capacity {plan.capacity:g} requests/s; "
        f"the watcher looks every {plan.interval:g} s (its default); reading model of docs/lab.md, seed "
        f"{plan.seed}; {args.runs} run(s) of each case ({time.perf_counter() - started:.0f} s in all, most "
        "of it seeding). Times are from the first threat's delivery (its date in the mailstore); medians "
        "when there are several runs, every run's value otherwise.\n\n"
    )
    body = (
        "## From the first threat, with nobody awake (watcher, signed policy)\n\n"
        + setup
        + _table(results)
        + "\n"
        + NOTES
        + "\n"
        + _projection()
        + _verdict(results["unattended"])
    )
    write_section("unattended", body)
    print(body)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def _watcher(cell: Any) -> Any:
    """A cell only the watcher's runs have (an operator is paged by nobody here)."""
    return lambda rs: cell(rs) if rs and rs[0].scenario.unattended else "n/a (an operator)"


def _since(reports: list[Any], attr: str) -> float | None:
    def one(r: Any) -> float | None:
        moment = getattr(r, attr)
        return moment - r.first_threat_at if moment and r.first_threat_at else None

    return _median([one(r) for r in reports])


def _seconds(value: float | None, goal: float | None = None) -> str:
    if value is None:
        return "never"
    return f"{value:.1f} s" + ("" if goal is None else (" (met)" if value <= goal else " (NOT met)"))


def _table(results: dict[str, list[Any]]) -> str:
    def each(cell: Any) -> Any:
        return lambda rs: " / ".join(str(cell(r)) for r in rs)

    rows = [
        (
            "time from the first threat to detection",
            "≤ 15 s",
            _watcher(lambda rs: _seconds(_since(rs, "detected_at"), DETECT_S)),
        ),
        ("time from the first threat to the page", "", _watcher(lambda rs: _seconds(_since(rs, "paged_at")))),
        (
            "time from the first threat to the first run's containment",
            "",
            _watcher(lambda rs: _seconds(_since(rs, "first_contained_at"))),
        ),
        (
            "the watcher's response (status, runs of its playbooks)",
            "",
            _watcher(each(lambda r: f"{r.response}, {r.passes}")),
        ),
        (
            "time from the first threat to containment",
            "≤ 60 s",
            lambda rs: _seconds(_since(rs, "contained_at"), CONTAIN_S),
        ),
        (
            "time from the response's start to containment",
            "",
            lambda rs: _seconds(_median([r.time_to_containment for r in rs])),
        ),
        ("threat copies delivered in all", "", each(lambda r: r.copies_delivered)),
        ("threat copies opened before the purge", "≤ 5 %", _opened),
        ("threats delivered after containment", "0", each(lambda r: r.threats_after_containment)),
        ("hijacked accounts blocked", "all", each(lambda r: f"{r.hijacked_blocked}/{r.hijacked}")),
        ("innocent accounts blocked", "none", each(lambda r: r.innocents_blocked)),
        ("schools cut outside those the threat reached", "none", each(lambda r: r.schools_cut_outside)),
        ("verdict", "CONTAINED", each(lambda r: "CONTAINED" if r.contained else "NOT CONTAINED")),
    ]
    lines = [
        "| measure | " + " | ".join(results) + " | goal (unattended) |",
        "|---" * (len(results) + 2) + "|",
    ]
    for label, goal, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(rs) for rs in results.values()) + f" | {goal} |")
    return "\n".join(lines) + "\n"


def _opened(reports: list[Any]) -> str:
    cells = [f"{r.copies_opened} ({r.opened_share:.1%})" for r in reports]
    worst = max(r.opened_share for r in reports)
    return " / ".join(cells) + (" (met)" if worst <= OPENED else " (NOT met)")


def _projection() -> str:
    from pcnctl.lab.reading import PUPILS, STAFF

    delays = (("10 min", 600), ("30 min", 1800), ("2 h", 7200))
    head = "| purge this long after delivery | " + " | ".join(d for d, _s in delays) + " |"
    lines = [head, "|---" * (len(delays) + 1) + "|"]
    for name, curve in (("staff (the wave's recipients)", STAFF), ("pupils", PUPILS)):
        lines.append(
            f"| {name}: copies opened | " + " | ".join(f"{curve.share(s):.0%}" for _d, s in delays) + " |"
        )
    return (
        "The attended column is the best case: the operator starts the playbook as the twelfth threat lands. "
        "A person must first be told, wake up, log in and type; what the reading model says of a purge that "
        "late (the share of copies opened by then, whatever the response's own speed):\n\n"
        + "\n".join(lines)
        + "\n"
    )


NOTES = (
    "\nThe first run's containment is when the watcher's first run of the playbook had blocked the accounts "
    "its hunt linked and cut student messaging in the schools reached; containment is when the last hijacked "
    "account was blocked: by the second look (30 s after the response's start, the hunt again once the "
    "attacker's other accounts have logged in) when the first run had not linked them all, else the first "
    "run's. Threat copies delivered vary with the moment the first threat lands in the watcher's 5 s cycle: "
    "the sooner the look, the fewer the threats before the senders are blocked.\n"
)


def _verdict(reports: list[Any]) -> str:
    detect, contain = _since(reports, "detected_at"), _since(reports, "contained_at")
    opened = max(r.opened_share for r in reports)
    goals = [
        ("detection ≤ 15 s", detect is not None and detect <= DETECT_S),
        ("containment ≤ 60 s", contain is not None and contain <= CONTAIN_S),
        ("≤ 5 % of copies opened before the purge", opened <= OPENED),
        ("no innocent account blocked", all(r.innocents_blocked == 0 for r in reports)),
        ("no school cut outside those reached", all(r.schools_cut_outside == 0 for r in reports)),
    ]
    met = ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals)
    return f"\nUnattended, against the goals: {met}.\n"


if __name__ == "__main__":
    main()
