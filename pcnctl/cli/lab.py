"""``pcnctl lab``: run the Edifice-compatible lab ENT on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from pcnctl.cli._common import handle_errors, note
from pcnctl.cli.examples import examples

app = typer.Typer(
    help="The lab: an Edifice-compatible ENT on 127.0.0.1 for demos, tests and drills.", no_args_is_help=True
)

DataOpt = Annotated[Path, typer.Option("--data", help="Data directory (SQLite, lab.json).")]
SeedOpt = Annotated[
    str | None, typer.Option("--seed", help="Preset: small (20 schools) or paris (800 schools).")
]
RandomSeedOpt = Annotated[int, typer.Option("--random-seed", help="Random seed: same seed, same académie.")]


def _check_preset(preset: str | None) -> None:
    from pcnctl.errors import UsageError
    from pcnctl.lab.seed import PRESETS

    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown lab preset {preset!r}", hint=f"choose from {', '.join(PRESETS)}")


@app.command("serve", epilog=examples("lab serve"))
@handle_errors
def serve(
    data: DataOpt = Path("pcnctl-lab"),
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1; 0 picks a free one.")] = 0,
    seed: SeedOpt = None,
    random_seed: RandomSeedOpt = 1,
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Added latency per request.")] = 0.0,
    capacity: Annotated[
        float, typer.Option("--capacity", help="Requests/s above which the lab answers 429.")
    ] = 0.0,
    fail_rate: Annotated[float, typer.Option("--fail-rate", help="Fraction of requests answered 500.")] = 0.0,
    sessions_limit: Annotated[int, typer.Option("--sessions-limit", help="Live sessions before 509.")] = 0,
) -> None:
    """Seed the data directory if needed, serve the lab, write DATA/lab.json; stop with Ctrl-C or SIGTERM."""
    from pcnctl.errors import UsageError
    from pcnctl.lab.app import Knobs
    from pcnctl.lab.server import serve as run

    _check_preset(seed)
    if not 0 <= fail_rate <= 1:
        raise UsageError("--fail-rate is a fraction between 0 and 1")
    if latency_ms < 0 or capacity < 0 or sessions_limit < 0 or not 0 <= port <= 65535:
        raise UsageError("--latency-ms, --capacity, --sessions-limit and --port must be positive")
    knobs = Knobs(
        latency_ms=latency_ms, capacity=capacity, fail_rate=fail_rate, sessions_limit=sessions_limit
    )
    note(f"Lab data in {data}; lab.json is written there once the server listens. Stop with Ctrl-C.")
    run(data, port=port, preset=seed, random_seed=random_seed, knobs=knobs)
    note("Lab stopped.")


@app.command("seed", epilog=examples("lab seed"))
@handle_errors
def seed_(
    data: DataOpt = Path("pcnctl-lab"), seed: SeedOpt = "small", random_seed: RandomSeedOpt = 1
) -> None:
    """Generate a synthetic académie in the data directory (replaces what is there)."""
    import time

    from pcnctl.lab.seed import seed as run
    from pcnctl.lab.store import Store

    _check_preset(seed)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.perf_counter()
    store = Store(data)
    try:
        info = run(store, seed or "small", random_seed)
    finally:
        store.close()
    note(
        f"Seeded {info['schools']} schools and {info['users']} users in {time.perf_counter() - started:.1f} s"
    )


@app.command("attack", epilog=examples("lab attack"))
@handle_errors
def attack(
    data: DataOpt = Path("pcnctl-lab"),
    senders: Annotated[int, typer.Option("--senders", min=1, max=500, help="Hijacked student accounts.")] = 8,
    messages: Annotated[int, typer.Option("--messages", min=1, max=100_000, help="Threats to send.")] = 60,
    schools: Annotated[int, typer.Option("--schools", min=1, max=1000, help="Schools the wave hits.")] = 6,
    rate: Annotated[
        float, typer.Option("--rate", min=0, help="Messages per second (0 = as fast as it can).")
    ] = 20.0,
    noise: Annotated[
        int, typer.Option("--noise", min=0, help="Ordinary messages sent around the wave.")
    ] = 30,
    hijacked: Annotated[
        int, typer.Option("--hijacked", min=0, max=5000, help="Hijacked accounts in all (silent ones too).")
    ] = 0,
    innocent: Annotated[
        int, typer.Option("--innocent", min=0, help="Ordinary pupils logging in through the proxy meanwhile.")
    ] = 40,
    via_proxy: Annotated[
        float, typer.Option("--via-proxy", min=0, max=1, help="Share of hijacked accounts behind the proxy.")
    ] = 0.25,
    random_seed: RandomSeedOpt = 1,
    background: Annotated[
        bool, typer.Option("--background", help="Run detached (for drills); prints the pid.")
    ] = False,
    reply_after_cut: Annotated[
        bool,
        typer.Option("--reply-after-cut", help="Once a send is refused, reply to all of a group message."),
    ] = False,
) -> None:
    """Play a bomb-threat wave through the lab's real routes; ground truth in DATA/attack-truth.json."""
    from pcnctl.env import child_environ
    from pcnctl.errors import UsageError

    if not (data / "lab.json").exists():
        raise UsageError(
            f"no running lab in {data} (no lab.json)", hint="start one: pcnctl lab serve --data DIR"
        )
    if background:
        from pcnctl.lab.attack import command

        args = command(
            data,
            senders=senders,
            messages=messages,
            schools=schools,
            rate=rate,
            noise=noise,
            random_seed=random_seed,
            hijacked=hijacked,
            innocent=innocent,
            via_proxy=via_proxy,
            reply_after_cut=reply_after_cut,
        )
        log = (data / "attack.log").open("w")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=child_environ(os.environ),
        )
        _check_started(proc, data)
        (data / "attack.pid").write_text(str(proc.pid))
        typer.echo(proc.pid)
        note(f"Wave running in the background (pid {proc.pid}); ground truth: {data / 'attack-truth.json'}")
        return
    from pcnctl.lab import attack as wave

    truth = wave.run(
        data,
        senders=senders,
        messages=messages,
        schools=schools,
        rate=rate,
        noise=noise,
        random_seed=random_seed,
        hijacked=hijacked,
        innocent=innocent,
        via_proxy=via_proxy,
        reply_after_cut=reply_after_cut,
    )
    note(
        f"Wave done: {len(truth['messages'])} threat(s) delivered to {len(truth['recipients'])} "
        f"recipient(s) in {len(truth['schools'])} school(s) by {len(truth['senders'])} account(s) "
        f"({len(truth['hijacked'])} hijacked in all, {len(truth['silent'])} silent); "
        f"{truth['refused']} refused; "
        f"{len(truth['noise_messages'])} ordinary message(s). Truth: {data / 'attack-truth.json'}"
    )


def _check_started(proc: subprocess.Popen[Any], data: Path) -> None:
    """A background wave that dies at once (an import error, a lab gone) is reported, not left in its log:
    wait until it writes its ground truth or ends."""
    import time

    from pcnctl.lab.process import child_failed

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None and not (data / "attack-truth.json").exists():
        time.sleep(0.05)
    if proc.poll() not in (None, 0):
        raise child_failed("the background wave", data / "attack.log", proc.returncode)


@app.command("drill", epilog=examples("lab drill"))
@handle_errors
def drill(
    data: Annotated[Path, typer.Option("--data", help="Drill directory (recreated).")] = Path("pcnctl-drill"),
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="small (default), reference (paris, 200 accounts, 50 schools), reply-all, unattended or "
            "unattended-reference (the watcher and a signed policy, nobody else).",
        ),
    ] = "small",
    preset: Annotated[
        str | None, typer.Option("--preset", "--seed", help="Lab preset: small or paris.", show_default=False)
    ] = None,
    senders: Annotated[int | None, typer.Option("--senders", help="Hijacked accounts that send.")] = None,
    hijacked: Annotated[
        int | None, typer.Option("--hijacked", help="Hijacked accounts in all (the silent ones too).")
    ] = None,
    schools: Annotated[int | None, typer.Option("--schools", help="Schools the wave hits.")] = None,
    messages: Annotated[
        int | None, typer.Option("--messages", help="Threats the wave tries to send.")
    ] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Threats per second.")] = None,
    innocent: Annotated[
        int | None, typer.Option("--innocent", help="Pupils logging in through the attacker's proxy address.")
    ] = None,
    latency_ms: Annotated[
        float | None, typer.Option("--latency-ms", help="Latency the lab adds to each request.")
    ] = None,
    capacity: Annotated[
        float | None, typer.Option("--capacity", help="Requests/s the lab serves before answering 429.")
    ] = None,
    fault_rate: Annotated[
        float | None, typer.Option("--fault-rate", help="Fraction of requests the lab answers 500.")
    ] = None,
    reading: Annotated[
        bool | None,
        typer.Option(
            "--reading/--no-reading",
            help="Recipients open their messages over time (docs/lab.md); on in the unattended scenarios.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=1.0, help="The watcher's pause between looks (unattended)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--random-seed", help="Seed of the reading model.")] = None,
    playbook: Annotated[Path | None, typer.Option("--playbook", help="Playbook to answer with.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or markdown.")] = "table",
) -> None:
    """Start a lab, play a wave, answer it with bomb-threat-wave.yaml unattended, score the containment.

    The scenario sets the scale; each option overrides its value. Exits 0 only when the wave is contained
    (every hijacked account blocked, no innocent one) and 6 otherwise.
    """
    from pcnctl.cli._common import check_format, emit
    from pcnctl.errors import PartialFailureError
    from pcnctl.lab import drill as core

    check_format(output)
    plan = core.scenario(
        scenario,
        preset=preset,
        senders=senders,
        hijacked=hijacked,
        schools=schools,
        messages=messages,
        rate=rate,
        innocent=innocent,
        latency_ms=latency_ms,
        capacity=capacity,
        fault_rate=fault_rate,
        reading=reading,
        interval=interval,
        seed=seed,
    )
    if plan.messages < plan.start_after:
        from pcnctl.errors import UsageError

        raise UsageError(f"--messages must be at least {plan.start_after}: the response starts after them")
    who = (
        f"the watcher (every {plan.interval:g} s) and a policy two administrators signed for "
        if plan.unattended
        else "playbook "
    )
    note(
        f"Drill in {data} ({scenario}): lab ({plan.preset}), {plan.hijacked} hijacked account(s) of which "
        f"{plan.senders} send, {plan.schools} school(s), {plan.messages} threats at {plan.rate:g}/s; server "
        f"latency {plan.latency_ms:g} ms, capacity {plan.capacity:g}/s, faults {plan.fault_rate:g}; {who}"
        f"{(playbook or core.PLAYBOOK).name} with every approval given"
        + ("; recipients read their messages (reading model)." if plan.reading else ".")
    )
    report = core.run(
        data,
        plan,
        environ=os.environ,
        playbook=playbook or core.PLAYBOOK,
        on_step=lambda s: note(f"  [{s.status}] {s.id}: {s.summary}"),
    )
    emit(report.rows(), output, ("measure", "value"))
    if output == "table" and report.phases:
        phases = ("planning_s", "writes_s", "verification_s", "waiting_s")
        columns = ("step", "seconds", "calls", *phases, "floor_s")
        emit(report.phases, output, columns, title="Where the time went (floor: the calls at capacity)")
    if not report.contained:
        raise PartialFailureError("the wave was NOT contained", hint=f"see {data / 'drill-report.json'}")
    note(f"Wave contained. Report: {data / 'drill-report.json'}")
