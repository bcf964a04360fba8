"""Examples shown at the end of every command's ``--help``: what an operator types during a response.

Kept in one table so that they read as one manual and a test can check that no command lacks them.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "profile add": (
        "pcnctl profile add pcn --url https://ent.example.fr --login admin.pcn",
        "pcnctl profile add pcn-svc --url https://ent.example.fr --auth oauth-client --client-id pcnctl "
        "--scope 'org.entcore.infra.controllers.EventStoreController|listEventsPartial'",
        "pcnctl profile add pcn --url https://ent.example.fr --login admin.pcn "
        "--mailstore postgresql://pcnctl_ro@db.internal/ent",
        "pcnctl profile add pcn --url https://ent.example.fr --login admin.pcn "
        "--state postgresql://marie@db.internal/pcnctl",
    ),
    "profile list": ("pcnctl profile list", "pcnctl profile list -o json"),
    "profile show": ("pcnctl profile show pcn",),
    "profile use": ("pcnctl profile use pcn",),
    "profile remove": ("pcnctl profile remove old-preprod",),
    "auth login": (
        "pcnctl auth login",
        "pcnctl auth login --save -p pcn",
        "pcnctl auth login --secret-stdin",
    ),
    "auth status": ("pcnctl auth status", "pcnctl auth status -p pcn -o json"),
    "auth logout": ("pcnctl auth logout", "pcnctl auth logout --forget"),
    "doctor": ("pcnctl doctor", "pcnctl doctor -p pcn -o json"),
    "schools list": ('pcnctl schools list --search "victor hugo"', "pcnctl schools list -o csv > ecoles.csv"),
    "schools show": ("pcnctl schools show 0750654D",),
    "schools export": (
        "pcnctl schools export --affected --incident INC-0327 --format xlsx --out etablissements.xlsx",
        "pcnctl schools export --affected --incident INC-0327 --excel --out etablissements.csv",
        "pcnctl schools export --affected --from-search threat.json -o json",
    ),
    "users list": (
        "pcnctl users list --school 0750654D --profile Student -o csv > eleves.csv",
        "pcnctl users list --school 0750654D --search dupont",
    ),
    "users show": ("pcnctl users show jean.dupont", "pcnctl users show 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"),
    "accounts block": (
        "pcnctl accounts block eleve.piratee1 eleve.piratee2 --dry-run",
        "pcnctl accounts block --from-file senders.csv --incident INC-0327",
        "pcnctl accounts block --from-file hunt.csv --incident INC-0327",
        "pcnctl accounts block --school 0750654D --profile Student --max 900 --yes",
    ),
    "accounts unblock": ("pcnctl accounts unblock --from-file cleared.csv --incident INC-0327",),
    "accounts reset-password": (
        "pcnctl accounts reset-password eleve.piratee1 --incident INC-0327",
        "pcnctl accounts reset-password --from-file senders.csv --mode erase --yes",
    ),
    "accounts renewal-codes": (
        "pcnctl accounts renewal-codes eleve.piratee1 --out codes.csv --incident INC-0327",
    ),
    "accounts block-profile": (
        "pcnctl accounts block-profile --school 0750654D --profile Student --dry-run",
        "pcnctl accounts block-profile --school 0750654D --profile Student --unblock --incident INC-0327",
    ),
    "accounts block-traces": ("pcnctl accounts block-traces --school 0750654D",),
    "accounts quarantine": (
        "pcnctl accounts quarantine eleve.piratee1 --dry-run",
        "pcnctl accounts quarantine eleve.piratee1 --since 2d --incident INC-0327 --yes",
    ),
    "sessions revoke": ("pcnctl sessions revoke eleve.piratee1 --incident INC-0327",),
    "messaging block": (
        "pcnctl messaging block --profile Student --school 0750654D --dry-run",
        "pcnctl messaging block --profile Student --all-schools --until 2024-04-08T08:00 --reason vague",
        "pcnctl messaging block --profile Student --school 0750654D --method roles --revoke-sessions",
    ),
    "messaging status": ("pcnctl messaging status", "pcnctl messaging status -o json"),
    "messaging verify": ("pcnctl messaging verify", "pcnctl messaging verify --incident INC-0327"),
    "messaging unblock": (
        "pcnctl messaging unblock --incident INC-0327",
        "pcnctl messaging unblock --school 0750654D --yes",
    ),
    "messaging expire": ("pcnctl messaging expire",),
    "messages search": (
        "pcnctl messages search --since 2h --regex 'bombe|explosif' --has-attachment",
        "pcnctl messages search --like MESSAGE_ID --save threat.json",
    ),
    "messages show": ("pcnctl messages show MESSAGE_ID",),
    "messages evidence": ("pcnctl messages evidence --from-search threat.json --incident INC-0327",),
    "messages purge": ("pcnctl messages purge --from-search threat.json --incident INC-0327",),
    "senders": ("pcnctl senders --since 2h --mass", "pcnctl senders --since 2h --mass -o csv > senders.csv"),
    "hunt": (
        "pcnctl hunt --from-search threat.json --since 2h -o csv --out hunt.csv",
        "pcnctl hunt --account eleve.piratee1 --ip 185.220.101.47 --since 2h --baseline 1d",
        "pcnctl hunt --ip 185.220.101.47 --ua python-requests/2.31.0 --since 2h -o csv > hunt.csv",
    ),
    "playbook validate": ("pcnctl playbook validate playbooks/bomb-threat-wave.yaml",),
    "playbook plan": (
        "pcnctl playbook plan playbooks/bomb-threat-wave.yaml",
        "pcnctl playbook plan playbooks/compromised-account.yaml --input account=eleve.piratee1",
    ),
    "playbook run": (
        "pcnctl playbook run playbooks/bomb-threat-wave.yaml --incident INC-0327",
        "pcnctl playbook run playbooks/bomb-threat-wave.yaml --incident INC-0327 --approve-all",
    ),
    "playbook resume": ("pcnctl playbook resume INC-0327 --approve purge",),
    "incident open": ("pcnctl incident open --id INC-0327 --title 'menaces à la bombe, 27/03'",),
    "incident list": ("pcnctl incident list",),
    "incident show": ("pcnctl incident show INC-0327",),
    "incident report": (
        "pcnctl incident report INC-0327 -o html --lang fr --out rapport.html",
        "pcnctl incident report INC-0327 -o json --offline",
    ),
    "incident exposure": (
        "pcnctl incident exposure INC-0327 --out exposition/",
        "pcnctl incident exposure INC-0327 --out exposition/ --school 0750654D -o json",
    ),
    "incident verify": ("pcnctl incident verify INC-0327",),
    "incident resume": ("pcnctl incident resume INC-0327",),
    "incident close": ("pcnctl incident close INC-0327",),
    "rollback": ("pcnctl rollback INC-0327 --dry-run", "pcnctl rollback INC-0327 --yes"),
    "approve": (
        "pcnctl approve ~/.local/state/pcnctl/incidents/INC-0327/approvals/messages.purge-3f9c2a1b.json",
        "pcnctl approve demande.json --key ~/.ssh/id_ed25519_pcn",
    ),
    "audit run": (
        "pcnctl audit run --since last --quiet --fail-on critical --out-dir /var/lib/pcnctl/reports",
        "pcnctl audit run --since 24h -o html --out audit.html --lang fr",
    ),
    "audit verify-log": ("pcnctl audit verify-log",),
    "state show": ("pcnctl state show", "pcnctl state show -p pcn -o json"),
    "state migrate": (
        "pcnctl state migrate -p pcn",
        "pcnctl state migrate --to postgresql://marie@db.internal/pcnctl --yes",
    ),
    "state init": (
        "pcnctl state init --to postgresql://pcnctl_owner@db.internal/pcnctl",
        "pcnctl state init --to postgresql://pcnctl_owner@db.internal/pcnctl --sql > pcnctl-schema.sql",
    ),
    "state login": ("pcnctl state login -p pcn", "pcnctl state login -p pcn --password-stdin"),
    "lab serve": ("pcnctl lab serve --data ./lab --seed small", "pcnctl lab serve --data ./big --seed paris"),
    "lab seed": ("pcnctl lab seed --data ./lab --seed paris --random-seed 2",),
    "lab attack": ("pcnctl lab attack --data ./lab --senders 5 --messages 30 --background",),
    "watch run": (
        "pcnctl watch run -p pcn",
        "pcnctl watch run -p pcn --cycles 1 --since 15m",
    ),
    "watch status": ("pcnctl watch status -p pcn", "pcnctl watch status -o json"),
    "watch confirm": ("pcnctl watch confirm INC-20240327-081205-3f9c",),
    "watch secret": ("pcnctl watch secret webhook-url -p pcn", "pcnctl watch secret smtp-password --stdin"),
    "watch policy new": (
        "pcnctl watch policy new --out /etc/pcnctl/policy.yaml --playbook /etc/pcnctl/bomb-threat-wave.yaml "
        "--accounts 200 --schools 50 --expire-hours 8 --valid-until 2027-06-30",
    ),
    "watch policy sign": ("pcnctl watch policy sign /etc/pcnctl/policy.yaml --key ~/.ssh/id_ed25519",),
    "watch policy check": ("pcnctl watch policy check -p pcn", "pcnctl watch policy check policy.yaml"),
    "lab drill": (
        "pcnctl lab drill",
        "pcnctl lab drill --scenario reference -o markdown",
        "pcnctl lab drill --hijacked 40 --senders 10 --latency-ms 20 --capacity 300 --fault-rate 0.01",
        "pcnctl lab drill --scenario unattended-reference -o json",
    ),
    "completion": (
        "pcnctl completion bash > /etc/bash_completion.d/pcnctl",
        "pcnctl completion zsh > ~/.zfunc/_pcnctl",
        "pcnctl completion fish > ~/.config/fish/completions/pcnctl.fish",
    ),
}


def examples(command: str) -> str:
    """The ``Examples:`` epilog of ``command`` (its path without ``pcnctl``), lines kept as written."""
    lines = "\n".join(f"  {e}" for e in EXAMPLES[command])
    return f"Examples:\n\n\b\n{lines}"
