"""The audit log and the evidence prove what they claim: entries forged beyond the seal are reported (and
not sealed over by the next genuine append), one entry a crash left unsealed is a warning, a key is offered
at profile add and doctor warns without one, a file planted in a sealed bundle is found, and incidents
opened and closed are in the log. Real files, the real state store, the lab over real HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pcnctl.state.auditlog import _digest
from tests.conftest import Cli, Lab, MemoryKeyring, played_wave


def log_path() -> Path:
    return Path(os.environ["PCNCTL_HOME"]) / "audit.log"


def entries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path().read_text().splitlines()]


def forge(count: int) -> None:
    """Append ``count`` entries chained as pcnctl chains them, as someone with write access to the home
    would (no key: nothing else to recompute)."""
    last = entries()[-1]
    with log_path().open("a") as fh:
        for n in range(count):
            entry = {"seq": last["seq"] + 1, "at": last["at"], "actor": "admc.pcn",
                     "action": "accounts.unblock", "target": f"forged-{n}", "result": "done",
                     "prev": last["hash"]}  # fmt: skip
            entry["hash"] = _digest(last["hash"], entry)
            fh.write(json.dumps(entry) + "\n")
            last = entry


def verified(cli: Cli) -> tuple[int, dict[str, Any]]:
    result = cli("audit", "verify-log", "-o", "json")
    return result.exit_code, result.json()


def test_incident_open_and_close_write_an_audit_entry_each(cli: Cli) -> None:
    assert cli("incident", "open", "--id", "INC-A", "--title", "threat wave").exit_code == 0
    assert cli("incident", "close", "INC-A").exit_code == 0
    kept = [(e["action"], e["incident"], e["result"]) for e in entries()]
    assert kept == [("incident:open", "INC-A", "opened"), ("incident:close", "INC-A", "closed")]
    assert entries()[0]["detail"] == "threat wave" and entries()[0]["actor"]
    code, report = verified(cli)
    assert code == 0 and report["sealed"] == 2


def test_forged_entries_beyond_the_seal_are_tampering_even_after_the_next_append(cli: Cli) -> None:
    cli.open_incidents("INC-F1", "INC-F2")
    forge(2)
    code, report = verified(cli)
    assert code == 11 and report["problem"] == "entries 3-4 were written after the last seal: forged entries"
    assert report["first_bad_line"] == 3
    cli.open_incidents("INC-F3")  # a genuine append: it must not seal the forged entries over
    code, report = verified(cli)
    assert code == 11
    assert "entries 3-4 were written beyond the seal, found by a later append" in report["problem"]
    assert [e["action"] for e in entries()][4:] == ["audit:unsealed", "incident:open"]


def test_one_entry_a_crash_left_unsealed_is_a_warning(cli: Cli) -> None:
    cli.open_incidents("INC-C1")
    forge(1)  # what a crash between the write and the seal's commit leaves
    code, report = verified(cli)
    assert code == 0 and report["intact"] and "entry 2 is not sealed yet" in report["warnings"]
    cli.open_incidents("INC-C2")
    code, report = verified(cli)
    assert code == 0 and "entry 2 was written but never sealed" in report["warnings"]


def test_a_sealed_entry_rewritten_before_entries_beyond_it_is_found_after_the_next_append(cli: Cli) -> None:
    cli.open_incidents("INC-R1", "INC-R2")
    rewritten = entries()
    rewritten[1]["result"] = "nothing happened"
    prev = rewritten[0]["hash"]
    rewritten[1]["prev"], rewritten[1]["hash"] = prev, _digest(prev, rewritten[1])
    log_path().write_text("".join(json.dumps(e) + "\n" for e in rewritten))
    forge(1)  # one more, to look like a crash's unsealed entry
    code, report = verified(cli)
    assert code == 11 and "rewritten" in report["problem"]
    cli.open_incidents("INC-R3")
    code, report = verified(cli)
    assert code == 11 and report["problem"] == "entry 2 was rewritten after it was sealed"


def test_a_log_rewritten_with_its_chain_is_not_sealed_over_by_the_next_append(cli: Cli) -> None:
    cli.open_incidents("INC-W1", "INC-W2")
    rewritten = entries()
    rewritten[1]["result"] = "nothing happened"  # same length, chain recomputed
    rewritten[1]["hash"] = _digest(rewritten[1]["prev"], rewritten[1])
    log_path().write_text("".join(json.dumps(e) + "\n" for e in rewritten))
    cli.open_incidents("INC-W3")
    code, report = verified(cli)
    assert code == 11 and report["problem"] == "entry 2 was rewritten after it was sealed"


def test_a_deleted_log_is_not_replaced_in_silence_by_the_next_append(cli: Cli) -> None:
    cli.open_incidents("INC-D1", "INC-D2")
    log_path().unlink()
    cli.open_incidents("INC-D3")  # a new log from entry 1
    code, report = verified(cli)
    assert code == 11 and report["problem"] == "the log was cut back to entry 0 after entry 2 was sealed"


def test_an_entry_whose_seal_failed_is_reported_unsealed(cli: Cli, tmp_path: Path) -> None:
    """A seal that cannot be recorded (its transaction rolled back) leaves the entry written but unsealed:
    one, a warning, as a crash between the write and the commit would; the seal never moves without it."""
    from pcnctl.state.auditlog import SEAL, verify
    from pcnctl.state.store import StateStore

    store = StateStore(tmp_path / "home")
    log = store.audit_log()
    log.append(action="first", target="t", result="ok")
    store.execute("CREATE TRIGGER refuse BEFORE UPDATE ON seals BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(Exception, match="disk full"):
        log.append(action="second", target="t", result="ok")
    seal = store.seal(SEAL)
    assert seal is not None and seal.count == 1
    result = verify(log)
    assert result.ok and result.entries == 2 and "entry 2 is not sealed yet" in result.warnings[0]
    store.close()


def test_profile_add_offers_an_audit_key_kept_in_the_keyring_and_doctor_warns_without_one(
    lab: Lab, cli: Cli, memory_keyring: MemoryKeyring
) -> None:
    added = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn")
    assert added.exit_code == 0 and "is not signed: add --audit-key" in added.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    rows = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert rows["audit-key"]["status"] == "warn" and "not signed" in rows["audit-key"]["detail"]
    cli.open_incidents("INC-K1")
    signed = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--force", "--audit-key")
    assert signed.exit_code == 0 and "kept in the keyring" in signed.stderr, signed.stderr
    [key] = [v for (_, user), v in memory_keyring.entries.items() if user.startswith("audit-key:")]
    config = Path(os.environ["PCNCTL_CONFIG"]).read_text()
    assert key not in config and key not in signed.stderr + signed.stdout
    assert not any(key in p.read_text(errors="ignore") for p in Path(os.environ["PCNCTL_HOME"]).rglob("*")
                   if p.is_file())  # fmt: skip
    cli.open_incidents("INC-K2")
    assert "mac" not in entries()[0] and "mac" in entries()[1]  # signed from the key on
    rows = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert rows["audit-key"]["status"] == "ok" and "keyring" in rows["audit-key"]["detail"]
    again = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--force", "--audit-key")
    assert "signed already" in again.stderr
    forged = entries()
    forged[1]["result"] = "nothing happened"  # rewritten with the chain and the seal recomputed...
    forged[1]["hash"] = _digest(forged[1]["prev"], forged[1])
    log_path().write_text("".join(json.dumps(e) + "\n" for e in forged))
    code, report = verified(cli)
    assert code == 11 and "MAC" in report["problem"]  # ...the key it cannot recompute still shows it


def test_an_audit_key_is_refused_on_a_machine_without_keyring_before_anything_changes(
    lab: Lab, cli: Cli
) -> None:
    result = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--audit-key")
    assert result.exit_code == 3 and "no keyring to keep an audit key" in result.stderr
    assert "PCNCTL_AUDIT_KEY" in result.stderr
    assert not Path(os.environ["PCNCTL_CONFIG"]).exists()


def test_a_file_planted_in_a_sealed_evidence_bundle_is_reported(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    wave = played_wave(lab, senders=6, messages=40, schools=5, rate=0, noise=30, random_seed=3)
    mailstore = lab.info["mailstore"]
    cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore", mailstore)
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    cli.open_incidents("INC-P")
    saved = tmp_path / "threat.json"
    assert cli("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    assert cli("messages", "evidence", "--from-search", str(saved), "--incident", "INC-P").exit_code == 0
    assert cli("incident", "verify", "INC-P").exit_code == 0
    [bundle] = (Path(os.environ["PCNCTL_HOME"]) / "incidents" / "INC-P" / "evidence").iterdir()
    (bundle / "extra-message.jsonl").write_text('{"id": "planted"}\n')
    (bundle / "attachments").mkdir()
    result = cli("incident", "verify", "INC-P", "-o", "json")
    assert result.exit_code == 11
    bad = {(c["file"], c["problem"]) for c in result.json() if not c["ok"]}
    problem = "not in the manifest: added after the bundle was sealed"
    assert bad == {("extra-message.jsonl", problem), ("attachments/", problem)}
