"""``pcnctl doctor``: can pcnctl work against this ENT, and with what rights."""

from __future__ import annotations

from pcnctl.cli._common import (
    OutputOpt,
    ProfileOpt,
    audit_key_source,
    emit,
    get_profile,
    get_state,
    handle_errors,
    open_driver,
)


@handle_errors
def doctor(profile: ProfileOpt = None, output: OutputOpt = "table") -> None:
    """Check reachability, TLS, authentication, identity and scope, and probe capabilities."""
    from pcnctl.reports import doctor as core

    prof = get_profile(profile)
    report, error = core.run(prof, open_driver, audit_key=audit_key_source(), state=get_state())
    rows = [dict(c, kind="check") for c in report.checks]
    rows += [
        {
            "kind": "capability",
            "check": c.name,
            "status": {"yes": "ok", "no": "no"}.get(c.state, "?"),
            "detail": c.detail,
        }
        for c in report.capabilities
    ]
    emit(rows, output, ("kind", "check", "status", "detail"))
    if error is not None:
        raise error
