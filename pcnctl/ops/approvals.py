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
import stat
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pcnctl.errors import ConfigError, RefusedError, UsageError
from pcnctl.files import write_private

NAMESPACE = "pcnctl-approval"
KIND = "pcnctl-approval-request"
TTL = timedelta(hours=2)  # a plan approved at 7:00 is not a licence for the afternoon
ACCOUNTS_ALONE = 20  # account runs up to this many accounts need no second administrator
SAMPLE = 20
# Parameters an approval does not bind: when the block ends and why, which the operator may retype.
UNBOUND = frozenset({"until", "reason"})


# Why a run needs a second administrator: each operation says it (Operation.approval) with these rules.
IRREVERSIBLE = "a purge cannot be undone"


def for_schools(what: str, count: int) -> str | None:
    """A change to ``what`` (messaging, logins) in more than one school."""
    return f"it changes {what} in {count} schools" if count > 1 else None


def for_accounts(count: int) -> str | None:
    """An account run over more than ACCOUNTS_ALONE accounts."""
    return f"its plan holds {count} accounts (more than {ACCOUNTS_ALONE})" if count > ACCOUNTS_ALONE else None


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
        return _moment(self.expires_at) <= datetime.now(UTC)

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> Request:
        """The request in ``raw`` (the bytes read once from ``path``), every field of its type."""
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise ValueError("not an approval request")
            request = cls(**data)
            texts = (request.ent, request.incident, request.op, request.digest, request.requested_by)
            if not all(isinstance(t, str) for t in texts) or not isinstance(request.count, int):
                raise ValueError("a field is not of its type")
            if not isinstance(request.schools, dict) or not all(isinstance(x, str) for x in request.sample):
                raise ValueError("schools or sample is not of its type")
            if _moment(request.expires_at) - _moment(request.requested_at) != TTL:
                raise ValueError(f"it does not expire {TTL} after it was written")
            return request
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsageError(
                f"{path} is not a pcnctl approval request ({exc})", hint="remove it; the run writes a new one"
            ) from None

    @classmethod
    def read(cls, path: Path) -> Request:
        return cls.parse(_read(path), path)


def _read(path: Path) -> bytes:
    """A request's bytes, read once, from a regular file only (a pipe could answer each read differently)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            raise UsageError(f"{path} is not a regular file", hint="remove it; the run writes a new request")
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such approval request") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _moment(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


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


def check(plan: Plan, why: str, approvers: str, folder: Path) -> str | None:
    """The approver of this plan, None when it needs none; refuses (before anything is changed) when it
    needs one and no valid signature is there, after writing the request to sign. A signature is used
    once: the run it let through is recorded, and the same command run again asks again."""
    if not plan.operator:
        raise RefusedError(
            "a four-eyes profile needs the operator's ENT login to tell the approver from the operator",
            hint="set --login on the profile (a client_credentials profile cannot be four-eyes)",
        )
    path = folder / f"{plan.op}-{plan.digest[:16]}.json"
    signature = path.with_name(path.name + ".sig")
    if path.exists() and signature.exists():
        approver = verify(plan, why, path, signature, approvers)
        signature.rename(signature.with_name(signature.name + ".used"))
        return approver
    if not _still_valid(path):
        write_private(
            path, plan.request(why, datetime.now(UTC)).text().decode()
        )  # atomic: never half-written
    raise RefusedError(
        f"this run needs a second administrator's approval: {why}; nothing was changed",
        hint=f"ask one to run 'pcnctl approve {path}' (it signs the request with their SSH key and writes "
        f"{signature.name} beside it: copy it there if they signed elsewhere), then run the same command "
        f"again (a playbook: 'pcnctl playbook resume {plan.incident}')",
    )


def _still_valid(path: Path) -> bool:
    """A request already written and not expired (the approver may be signing it): kept as it is."""
    try:
        return path.exists() and not Request.read(path).expired
    except UsageError:
        return False


def verify(plan: Plan, why: str, path: Path, signature: Path, approvers: str) -> str:
    """Who signed ``path``: a principal of the allowed-signers file, not the operator, over exactly the
    request this plan gives (every field the approver was shown), before its expiry. Anything else refuses."""
    raw = _read(path)
    request = Request.parse(raw, path)
    now = datetime.now(UTC)
    written = _moment(request.requested_at)
    if written > now + timedelta(minutes=5) or raw != plan.request(why, written).text():
        raise RefusedError(
            f"{path} does not describe this run's plan as it is now",
            hint="remove it and its signature, then run again to write a new request",
        )
    if request.expired:
        signature.unlink()
        path.unlink()
        raise RefusedError(
            f"the approval in {path} expired at {request.expires_at}",
            hint="run the command again to write a new request, and have it signed",
        )
    me = plan.operator.casefold()
    principals = [p for p in _signers(raw, signature, approvers) if p.casefold() != me]
    if _signed_by(raw, signature, approvers, plan.operator) or not principals:
        raise RefusedError(
            f"the approval of {path} is signed by the operator's own key: a second administrator must sign",
            hint=f"ask another administrator listed in {approvers} to run 'pcnctl approve {path}'",
        )
    return principals[0]


def _signers(raw: bytes, signature: Path, approvers: str) -> list[str]:
    """The principals of ``approvers`` whose key made ``signature`` over ``raw`` (OpenSSH checks it), the
    operator excluded by the caller; patterns and lists of principals never stand for one administrator."""
    keygen = ssh_keygen()
    if not Path(approvers).is_file():
        raise ConfigError(f"the profile's approvers file {approvers} does not exist")
    found = subprocess.run(
        [keygen, "-Y", "find-principals", "-s", str(signature), "-f", approvers],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise RefusedError(
            f"the key that made {signature} is not in the approvers file {approvers}",
            hint=f"ask an administrator listed there to sign ({found.stderr.strip() or 'no matching key'})",
        )
    named = [p.strip() for p in found.stdout.splitlines() if p.strip()]
    plain = [p for p in named if not any(c in p for c in "*?!,")]
    verified = [p for p in plain if _signed_by(raw, signature, approvers, p)]
    if not verified:
        raise RefusedError(
            f"the signature {signature} is not valid for {signature.name.removesuffix('.sig')} by a key of "
            f"{approvers} named for one administrator",
            hint="the request may have been changed after it was signed: remove both files and run again",
        )
    return verified


def _signed_by(raw: bytes, signature: Path, approvers: str, principal: str) -> bool:
    """Whether ``approvers`` lets ``principal`` (compared as OpenSSH does, patterns included) be the
    signer of ``raw``."""
    done = subprocess.run(
        [
            ssh_keygen(),
            "-Y",
            "verify",
            "-f",
            approvers,
            "-I",
            principal,
            "-n",
            NAMESPACE,
            "-s",
            str(signature),
        ],
        input=raw,
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def sign(path: Path, key: Path) -> Path:
    """The approver's signature over the request, written beside it (``ssh-keygen -Y sign``); a signature
    already there is replaced only once the new one is made."""
    if not key.is_file():
        raise UsageError(f"no SSH key at {key}", hint="give yours with --key ~/.ssh/id_ed25519")
    raw = _read(path)
    Request.parse(raw, path)  # only a well-formed request is signed
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        copy = Path(scratch) / path.name
        copy.write_bytes(raw)
        done = subprocess.run(
            [ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise UsageError(f"ssh-keygen could not sign {path}: {done.stderr.strip()}")
        signature = path.with_name(path.name + ".sig")
        os.replace(copy.with_name(copy.name + ".sig"), signature)
    return signature


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
    entries = [ln.split() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    signers = sorted({p for e in entries if _for_us(e) for p in e[0].split(",")})
    if len(signers) < 2:
        return (
            "fail",
            f"{approvers} names {len(signers)} approver(s) for {NAMESPACE}: four eyes need two at least",
        )
    if mode & 0o022 or (os.geteuid() != 0 and os.access(path, os.W_OK)):
        return (
            "warn",
            f"{approvers} can be changed by the operators: whoever edits it can approve their own runs",
        )
    return "ok", f"{len(signers)} approver(s) in {approvers}: {', '.join(signers[:5])}"


def _for_us(entry: list[str]) -> bool:
    """An allowed-signers line that may sign in pcnctl's namespace (no ``namespaces=``, or one naming it)."""
    for option in entry[1:-2]:
        if option.startswith("namespaces="):
            return NAMESPACE in option.removeprefix("namespaces=").strip('"').split(",")
    return True
