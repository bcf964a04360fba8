"""The lab's seed: deterministic, valid UAIs, the promised sizes; lab.json; a clean stop."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from pcnctl.lab.seed import seed
from pcnctl.lab.store import Store
from pcnctl.uai import is_valid
from tests.conftest import Cli, Lab, start_lab, stop_lab


def seeded(tmp_path: Path, preset: str, random_seed: int) -> tuple[dict[str, object], Store]:
    store = Store(tmp_path)
    return seed(store, preset, random_seed), store


def test_small_seed_is_deterministic_and_valid(tmp_path: Path) -> None:
    a, store_a = seeded(tmp_path / "a", "small", 7)
    b, store_b = seeded(tmp_path / "b", "small", 7)
    c, _ = seeded(tmp_path / "c", "small", 8)
    assert a == b and a != c
    rows = lambda s: [tuple(r) for r in s.all("SELECT uai, name, city FROM structures ORDER BY uai")]  # noqa: E731
    assert rows(store_a) == rows(store_b)
    uais = [r[0] for r in rows(store_a)]
    assert len(uais) == 20 and all(is_valid(u) for u in uais)
    assert 4_000 <= int(a["users"]) <= 7_000  # type: ignore[call-overload]
    kinds = dict(store_a.all("SELECT kind, count(*) FROM structures GROUP BY kind"))  # type: ignore[arg-type]
    assert kinds == {"ecole": 12, "college": 6, "lycee": 2}
    profiles = {r[0] for r in store_a.all("SELECT DISTINCT profile FROM users")}
    assert profiles == {"Student", "Teacher", "Personnel", "Relative", "Guest"}
    groups = store_a.one("SELECT count(*) n FROM groups WHERE sub_type = 'StructureGroup'")
    assert groups is not None and groups["n"] == 20 * 5  # one structure group per profile and school
    logins = store_a.one("SELECT count(*) n, count(DISTINCT login) d FROM users")
    assert logins is not None and logins["n"] == logins["d"]


def test_paris_preset_size(tmp_path: Path) -> None:
    """Its seeding time is a benchmark's business (docs/benchmarks.md), not a test's."""
    info, store = seeded(tmp_path, "paris", 1)
    assert info["schools"] == 800 and 270_000 <= int(info["users"]) <= 330_000  # type: ignore[call-overload]
    assert all(is_valid(r[0]) and r[0].startswith("075") for r in store.all("SELECT uai FROM structures"))


def test_lab_json_and_clean_stop(tmp_path: Path) -> None:
    lab = start_lab(tmp_path / "lab", "--seed", "small", "--random-seed", "3", "--latency-ms", "1")
    try:
        info = lab.info
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert info["accounts"]["admc"]["login"] and info["accounts"]["student"]["password"]
        assert all(len(a["schools"]) == 2 for a in info["accounts"]["adml"])
        assert info["accounts"]["user_password"] and len(info["mfa_code"]) == 6
        assert info["knobs"]["latency_ms"] == 1.0
        assert oct((tmp_path / "lab" / "lab.json").stat().st_mode & 0o777) == "0o600"
    finally:
        assert stop_lab(lab) == 0
    assert not (tmp_path / "lab" / "lab.json").exists()


def test_a_wave_plays_with_any_random_seed(lab: Lab, cli: Cli) -> None:
    for number in ("2", "7"):
        lab.reset()
        played = cli("lab", "attack", "--data", str(lab.data_dir), "--random-seed", number, "--senders", "2",
                     "--messages", "4", "--schools", "2")  # fmt: skip
        assert played.exit_code == 0, played.stderr
        assert "threat(s) delivered" in played.stderr + played.stdout


def test_a_checkpoint_is_returned_to_and_a_plain_reset_still_goes_to_the_seed(lab: Lab) -> None:
    student = lab.sql("SELECT id FROM users WHERE profile = 'Student' ORDER BY id LIMIT 1")[0][0]
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id = ?", student)
    lab.control("/__lab/checkpoint", {"name": "one-blocked"})
    lab.write_sql("UPDATE users SET blocked = 0 WHERE id = ?", student)
    lab.knobs(latency_ms=3)
    lab.control("/__lab/reset", {"checkpoint": "one-blocked"})
    assert lab.sql("SELECT blocked FROM users WHERE id = ?", student) == [(1,)]
    assert lab.control("/__lab/state")["knobs"]["latency_ms"] == 0.0  # knobs go back to their defaults
    lab.reset()
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", student) == [(0,)]
    for body in ({"checkpoint": "never-saved"}, {"checkpoint": "../seed"}):
        with pytest.raises(requests.HTTPError) as refused:
            lab.control("/__lab/reset", body)
        assert refused.value.response.status_code == 400
