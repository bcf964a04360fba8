"""``pcnctl schools`` and ``pcnctl users``: read the directory, schools addressed by UAI."""

from __future__ import annotations

from typing import Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    ProfileOpt,
    emit,
    emit_record,
    get_driver,
    handle_errors,
)
from pcnctl.cli.examples import examples

schools_app = typer.Typer(help="List and show schools (addressed by UAI).", no_args_is_help=True)
users_app = typer.Typer(help="List and show users.", no_args_is_help=True)

SCHOOL_COLUMNS = ("id", "uai", "name", "type", "city", "zip_code", "academy")
USER_COLUMNS = ("id", "login", "displayName", "profile", "blocked", "schools")


@schools_app.command("list", epilog=examples("schools list"))
@handle_errors
def schools_list(
    search: Annotated[str | None, typer.Option("--search", help="Filter by UAI, name or city.")] = None,
    profile: ProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List the schools in this profile's scope."""
    from pcnctl.ent import directory

    schools = directory.list_schools(get_driver(profile), search)
    emit((s.to_row() for s in schools), output, SCHOOL_COLUMNS)


@schools_app.command("show", epilog=examples("schools show"))
@handle_errors
def schools_show(
    school: Annotated[str, typer.Argument(help="UAI (e.g. 0750654D) or structure id.")],
    profile: ProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Show one school with its user counts per profile."""
    from pcnctl.ent import directory

    emit_record(directory.school_details(get_driver(profile), school), output)


@users_app.command("list", epilog=examples("users list"))
@handle_errors
def users_list(
    school: Annotated[str, typer.Option("--school", help="UAI or structure id.")],
    user_profile: Annotated[
        list[str] | None,
        typer.Option("--profile", help="Student, Teacher, Personnel, Relative or Guest (repeatable)."),
    ] = None,
    search: Annotated[str | None, typer.Option("--search", help="Name fragment (3+ characters).")] = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """List the users of one school (the pcnctl profile is -p here: --profile is the user profile)."""
    from pcnctl.ent import directory

    _school, users = directory.list_users(get_driver(profile), school, user_profile, search)
    emit((u.to_row() for u in users), output, USER_COLUMNS)


@users_app.command("show", epilog=examples("users show"))
@handle_errors
def users_show(
    user: Annotated[str, typer.Argument(help="User id or login.")],
    profile: ProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Show one user."""
    from pcnctl.ent import directory

    emit_record(directory.find_user(get_driver(profile), user).to_row(), output)
