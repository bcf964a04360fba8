"""The one error hierarchy of pcnctl and the exit codes it maps to.

Every failure the core can foresee is a :class:`PcnError` subclass carrying a message that says what was
wrong and a hint that says what to do. The CLI prints ``Error: ...`` and ``Hint: ...`` on stderr and exits
with ``exc.exit_code``; nothing else in pcnctl chooses an exit code. The codes are public API (cron jobs and
monitoring read them), so they only ever gain members.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    ERROR = 1  # unexpected internal error (a bug): rerun with --debug and report it
    USAGE = 2  # bad command line or input value: option, UAI, date, regex, file content
    CONFIG = 3  # config, profile, secret, authentication, MFA, expired session
    API = 4  # the ENT refused the request: missing rights, not found, invalid body
    UNAVAILABLE = 5  # server error, unreachable, timeout, TLS, rate limit outlasting retries
    PARTIAL = 6  # some items done, some failed (a file of the failures is written)
    REFUSED = 7  # a safety rule refused: cap exceeded, out of admin scope, not confirmed
    PLAYBOOK = 8  # playbook invalid, or a step failed
    AUDIT_WARNING = 10  # audit run: warnings found
    AUDIT_CRITICAL = 11  # audit run: critical findings
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; a journal, when there is one, can be resumed


class PcnError(Exception):
    """Root of pcnctl's errors: a message, an optional hint, an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(PcnError):
    """A value the operator typed or supplied in a file is not valid."""

    exit_code = ExitCode.USAGE


class ConfigError(PcnError):
    """Config file, profile or secret missing or malformed."""

    exit_code = ExitCode.CONFIG


class AuthError(PcnError):
    """Authentication failed: wrong credentials, blocked account, expired session."""

    exit_code = ExitCode.CONFIG


class MfaRequiredError(AuthError):
    """The ENT wants a second factor and none can be given here."""


class ApiError(PcnError):
    """The ENT answered with an error. Carries the request that failed."""

    exit_code = ExitCode.API

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"{method} {path}".strip()
        detail = f" ({where} -> {status})" if status is not None else (f" ({where})" if where else "")
        super().__init__(f"{message}{detail}", hint=hint)
        self.method = method
        self.path = path
        self.status = status


class PermissionDeniedError(ApiError):
    """The ENT refused: the identity lacks the right or the school is out of its scope."""


class NotFoundError(ApiError):
    """The object or the route does not exist on this ENT."""


class ConflictError(ApiError):
    """The ENT refused the change in the object's current state (409): nothing was changed."""


class ServerError(ApiError):
    """The ENT failed (5xx, 509 quota, 429 rate limit) after every retry allowed."""

    exit_code = ExitCode.UNAVAILABLE
    retry_after: float | None = None  # what the ENT asked for, when it said (the fan-out paces on it)


class TransportError(PcnError):
    """The ENT could not be reached: DNS, refused connection, timeout, TLS."""

    exit_code = ExitCode.UNAVAILABLE


class RefusedError(PcnError):
    """A safety rule refused the action before anything was changed."""

    exit_code = ExitCode.REFUSED


class PartialFailureError(PcnError):
    """Some items succeeded and some failed."""

    exit_code = ExitCode.PARTIAL


class RunFailedError(PcnError):
    """A run ended with items failed, a follow-up that found the effect missing, or the ENT gone: the exit
    code is the run's verdict's (:data:`pcnctl.ops.operation.EXIT_CODES`), whichever door ran it."""

    def __init__(self, message: str, *, exit_code: ExitCode, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


class InterruptedRunError(PcnError):
    """Ctrl-C or SIGTERM during a journalled run: what was done is recorded, the rest can resume."""

    exit_code = ExitCode.INTERRUPTED


class PlaybookError(PcnError):
    """A playbook is invalid or one of its steps failed."""

    exit_code = ExitCode.PLAYBOOK
