"""One mutating run inside an incident: journal records, audit entries, and who acted.

Every mutating operation of pcnctl goes through a :class:`RunContext`, so that whatever the command or
playbook, the journal can resume it and the audit log names the identity and the authentication mode.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pcnctl.errors import InterruptedRunError
from pcnctl.incident.auditlog import AuditLog
from pcnctl.incident.journal import Journal
from pcnctl.incident.store import Incident
from pcnctl.models import Identity
from pcnctl.platform import EntDriver


@dataclass
class RunContext:
    driver: EntDriver
    incident: Incident
    journal: Journal
    audit: AuditLog
    identity: Identity
    max_concurrency: int = 32
    rate_limit: float | None = None
    show_progress: bool = True
    batch_size: int = 50  # accounts per PUT /auth/users/block call (ADMC only); 0 = one call per account

    @classmethod
    def create(cls, driver: EntDriver, incident: Incident, **options: Any) -> RunContext:
        ident = driver.whoami()
        if driver.profile.name not in incident.profiles:
            incident.profiles.append(driver.profile.name)
            incident.save()
        return cls(driver, incident, Journal(incident.journal_path), AuditLog(), ident, **options)

    def meta(self) -> dict[str, Any]:
        return {
            "identity": self.identity.label,
            "auth": self.identity.auth_mode,
            "user_id": self.identity.user_id,
            "client_id": self.identity.client_id,
            "profile": self.driver.profile.name,
            "url": self.driver.profile.url,
        }

    def start(
        self, op: str, params: dict[str, Any], items: list[dict[str, Any]], run: str | None = None
    ) -> str:
        run = run or f"{op}-{secrets.token_hex(4)}"
        self.journal.append(
            {"t": "run", "run": run, "op": op, "params": params, "items": items, "meta": self.meta()}
        )
        self.log(run, f"{op}:start", f"{len(items)} item(s)", "started")
        return run

    def log(self, run: str, action: str, target: str, result: str, **extra: Any) -> None:
        """One audit-log entry, naming who acted and how they authenticated."""
        self.audit.append(
            actor=self.identity.label,
            auth=self.identity.auth_mode,
            profile=self.driver.profile.name,
            url=self.driver.profile.url,
            incident=self.incident.id,
            run=run,
            action=action,
            target=target,
            result=result,
            **extra,
        )

    def item(self, run: str, key: str, phase: str, detail: str = "") -> None:
        record: dict[str, Any] = {"t": "item", "run": run, "key": key, "phase": phase}
        if detail:
            record["detail"] = detail
        self.journal.append(record)

    def record(self, run: str, op: str, key: str, result: str, detail: str = "", label: str = "") -> None:
        """A final outcome: in the journal and in the audit log."""
        self.item(run, key, result, detail)
        self.log(run, op, key, result, target_label=label, detail=detail)

    def interrupted(self, run: str, counts: dict[str, int]) -> InterruptedRunError:
        """Record that ``run`` stopped part-way and return the error that tells the operator how to resume."""
        self.end(run, "interrupted", counts)
        return InterruptedRunError(
            f"interrupted: run {run} of incident {self.incident.id} stopped part-way (what was done is kept)",
            hint=f"resume it: pcnctl incident resume {self.incident.id}",
        )

    def end(self, run: str, status: str, counts: dict[str, int]) -> None:
        self.journal.append({"t": "end", "run": run, "status": status, "counts": counts})
        self.journal.sync()
