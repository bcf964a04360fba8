"""Four-eyes approval: on a profile with ``approvers``, a purge or a wide run waits for a second admin.

The operator's run stops before it changes anything and writes an approval request into the incident: the
ENT, the incident, the operation, what it will touch (counts per school, a sample) and a digest of its plan.
A second administrator reads it with ``pcnctl approve REQUEST`` and signs it with their own SSH key
(``ssh-keygen -Y sign``, namespace ``pcnctl-approval``), which writes ``REQUEST.sig`` beside it. Run again,
the same command finds the signature, checks it against the profile's OpenSSH allowed-signers file
(whose principals are the administrators' ENT logins), checks that the signer is not the operator, that the
request has not expired and that today's plan is still the one approved, and goes on; the approver is named
in the journal and in the audit log. No new cryptography and no shared secret: each administrator keeps
their SSH key, the allowed-signers file says who may approve.

What needs an approval: every purge (nothing brings the messages back), a messaging block or lift of more
than one school, and an account operation on more than ``ACCOUNTS_ALONE`` accounts. The approval binds the
operation and the keys of what it touches, not the expiry or the reason typed with it, so the operator may
run the same command again with a fresh relative ``--until``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pcnctl.errors import ConfigError, RefusedError, UsageError

NAMESPACE = "pcnctl-approval"
KIND = "pcnctl-approval-request"
TTL = timedelta(hours=2)  # a plan approved at 7:00 is not a licence for the afternoon
ACCOUNTS_ALONE = 20  # account runs up to this many accounts need no second administrator
SAMPLE = 20
# Parameters an approval does not bind: when the block ends and why, which the operator may retype.
UNBOUND = frozenset({"until", "reason"})


def reason_for(op: str, count: int) -> str | None:
    """Why a run of ``op`` over ``count`` items needs a second administrator, or None."""
    if op == "messages.purge":
        return "a purge cannot be undone"
    if op.startswith("messaging.") and count > 1:
        return f"it changes messaging in {count} schools"
    if op.startswith(("accounts.", "sessions.")) and count > ACCOUNTS_ALONE:
        return f"its plan holds {count} accounts (more than {ACCOUNTS_ALONE})"
    return None


def digest(ent: str, incident: str, op: str, bound: Mapping[str, object], keys: Sequence[str]) -> str:
    """What an approval binds: the ENT, the incident, the operation, its bound parameters, the items."""
    body = json.dumps([ent, incident, op, bound, sorted(keys)], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    """An approval request as written to the incident and signed, byte for byte, by the approver."""

    ent: str
    incident: str
    op: str
    digest: str
    reason: str
    count: int
    params: dict[str, object]  # the parameters the approval binds (the search of a purge, a block's lever)
    schools: dict[str, int]
    sample: list[str]
    note: str  # the reason the operator typed for the run, if any
    requested_by: str
    requested_at: str
    expires_at: str
    kind: str = KIND
    version: int = 1

    def text(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.expires_at) <= datetime.now(UTC)

    @classmethod
    def read(cls, path: Path) -> Request:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("kind") != KIND:
                raise ValueError("not an approval request")
            return cls(**data)
        except FileNotFoundError:
            raise UsageError(f"{path}: no such approval request") from None
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"{path} is not a pcnctl approval request ({exc})") from None


@dataclass(frozen=True)
class Plan:
    """What the run about to start would touch, as the approval sees it."""

    ent: str
    incident: str
    op: str
    params: Mapping[str, object]
    items: Sequence[Mapping[str, object]]
    operator: str  # the ENT login (or client id) of who runs it
    label: str  # how the journal names who runs it

    @property
    def digest(self) -> str:
        return digest(self.ent, self.incident, self.op, self.bound, [str(i["key"]) for i in self.items])

    @property
    def bound(self) -> dict[str, object]:
        return {k: v for k, v in self.params.items() if k not in UNBOUND}

    def request(self, reason: str, now: datetime) -> Request:
        schools = Counter(str(u) for i in self.items for u in _schools(i))
        labels = [str(i.get("login") or i.get("uai") or i["key"]) for i in self.items[:SAMPLE]]
        return Request(
            self.ent,
            self.incident,
            self.op,
            self.digest,
            reason,
            len(self.items),
            json.loads(json.dumps(self.bound, default=str)),
            dict(sorted(schools.items())),
            labels,
            str(self.params.get("reason") or ""),
            self.label,
            now.isoformat(timespec="seconds"),
            (now + TTL).isoformat(timespec="seconds"),
        )


def _schools(item: Mapping[str, object]) -> list[object]:
    schools = item.get("schools")
    if isinstance(schools, list):
        return list(schools)
    return [item["uai"]] if item.get("uai") else []


def check(plan: Plan, approvers: str, folder: Path) -> str | None:
    """The approver of this plan, None when it needs none; refuses (before anything is changed) when it
    needs one and no valid signature is there, after writing the request to sign."""
    why = reason_for(plan.op, len(plan.items))
    if why is None:
        return None
    path = folder / f"{plan.op}-{plan.digest[:16]}.json"
    signature = path.with_name(path.name + ".sig")
    if path.exists() and signature.exists():
        return verify(plan, path, signature, approvers)
    if not path.exists() or Request.read(path).expired:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(plan.request(why, datetime.now(UTC)).text())
        path.chmod(0o600)
    raise RefusedError(
        f"this run needs a second administrator's approval: {why}; nothing was changed",
        hint=f"ask one to run 'pcnctl approve {path}' (it signs the request with their SSH key and writes "
        f"{signature.name} beside it: copy it there if they signed elsewhere), then run the same command "
        f"again (a playbook: 'pcnctl playbook resume {plan.incident}')",
    )


def verify(plan: Plan, path: Path, signature: Path, approvers: str) -> str:
    """Who signed ``path``: a principal of the allowed-signers file, not the operator, for this very plan,
    before the request's expiry. Anything else refuses."""
    request = Request.read(path)
    if (request.ent, request.incident, request.op, request.digest) != (
        plan.ent,
        plan.incident,
        plan.op,
        plan.digest,
    ):
        raise RefusedError(f"{path} does not describe this run's plan", hint="remove it and run again")
    if request.expired:
        signature.unlink()
        path.unlink()
        raise RefusedError(
            f"the approval in {path} expired at {request.expires_at}",
            hint="run the command again to write a new request, and have it signed",
        )
    principals = _signers(path, signature, approvers)
    others = [p for p in principals if p != plan.operator]
    if not others:
        who = ", ".join(principals) or "nobody in the allowed-signers file"
        raise RefusedError(
            f"the approval of {path} is signed by {who}: a second administrator must sign, not the operator",
            hint=f"ask another administrator listed in {approvers} to run 'pcnctl approve {path}'",
        )
    return others[0]


def _signers(path: Path, signature: Path, approvers: str) -> list[str]:
    """The principals of ``approvers`` whose key made ``signature`` over ``path`` (OpenSSH checks it)."""
    keygen = ssh_keygen()
    if not Path(approvers).is_file():
        raise ConfigError(f"the profile's approvers file {approvers} does not exist")
    found = subprocess.run(
        [keygen, "-Y", "find-principals", "-s", str(signature), "-f", approvers],
        capture_output=True,
        text=True,
        check=False,
    )
    verified = []
    for principal in found.stdout.split() if found.returncode == 0 else []:
        done = subprocess.run(
            [keygen, "-Y", "verify", "-f", approvers, "-I", principal, "-n", NAMESPACE, "-s", str(signature)],
            input=path.read_bytes(),
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            verified.append(principal)
    if not verified:
        raise RefusedError(
            f"the signature {signature} is not valid for {path.name} by any key of {approvers}",
            hint="the request may have been changed after it was signed: remove both files and run again",
        )
    return verified


def sign(path: Path, key: Path) -> Path:
    """The approver's signature over the request, written beside it (``ssh-keygen -Y sign``)."""
    if not key.is_file():
        raise UsageError(f"no SSH key at {key}", hint="give yours with --key ~/.ssh/id_ed25519")
    path.with_name(path.name + ".sig").unlink(missing_ok=True)  # a new signature replaces an older one
    done = subprocess.run(
        [ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise UsageError(f"ssh-keygen could not sign {path}: {done.stderr.strip()}")
    return path.with_name(path.name + ".sig")


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ConfigError(
            "four-eyes approvals need OpenSSH's ssh-keygen", hint="install it: apt-get install openssh-client"
        )
    return found


def readiness(approvers: str) -> tuple[str, str]:
    """``doctor``'s view of a four-eyes profile: (ok | warn | fail, what it found)."""
    if shutil.which("ssh-keygen") is None:
        return (
            "fail",
            "ssh-keygen is missing: every purge and wide run is refused (apt-get install openssh-client)",
        )
    path = Path(approvers)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        mode = path.stat().st_mode
    except OSError as exc:
        return "fail", f"cannot read the approvers file {approvers}: {exc.strerror}"
    signers = [ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    usable = [ln for ln in lines if ln.strip() and ("namespaces=" not in ln or NAMESPACE in ln)]
    if len(usable) < 2:
        return (
            "fail",
            f"{approvers} names {len(usable)} approver(s) for {NAMESPACE}: four eyes need two at least",
        )
    if mode & 0o022 or (os.geteuid() != 0 and os.access(path, os.W_OK)):
        return (
            "warn",
            f"{approvers} can be changed by the operators: whoever edits it can approve their own runs",
        )
    return "ok", f"{len(usable)} approver(s) in {approvers}: {', '.join(signers[:5])}"
