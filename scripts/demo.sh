#!/usr/bin/env bash
# The README's demo: start the lab ENT, register profiles the way an operator would, check them, read the
# directory. Everything lives under .demo/ and the lab is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=.demo
rm -rf "$demo"
mkdir -p "$demo"
export PCNCTL_CONFIG="$PWD/$demo/config.yaml" PCNCTL_HOME="$PWD/$demo/state" PCNCTL_NO_SESSION_CACHE=1

pcnctl lab serve --data "$demo/lab" --seed small --random-seed 1 2>"$demo/lab.log" &
lab_pid=$!
trap 'kill "$lab_pid" 2>/dev/null; wait "$lab_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -f "$demo/lab/lab.json" ] && break; sleep 0.1; done
[ -f "$demo/lab/lab.json" ] || { cat "$demo/lab.log"; echo "the lab did not start" >&2; exit 1; }

# lab KEY.PATH: one value of lab.json (list indices as numbers).
lab() {
    python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[int(key)] if key.isdigit() else value[key]
print(value)' "$demo/lab/lab.json" "$1"
}
url=$(lab base_url)
# Lab-only throwaway secrets; on a real ENT these come from the keyring or the cron environment.
export PCNCTL_PASSWORD="$(lab accounts.user_password)" PCNCTL_MFA_CODE="$(lab mfa_code)"
adml_login=$(lab accounts.adml.0.login)
adml_school=$(lab accounts.adml.0.schools.0)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

printf '\n\033[1mThe drill: a bomb-threat wave on a fresh lab, answered by playbooks/bomb-threat-wave.yaml\033[0m\n'
step pcnctl lab drill --data "$demo/drill"

printf '\n\033[1mThe operator walkthrough, command by command\033[0m\n'
step pcnctl profile add lab --url "$url" --login "$(lab accounts.admc.login)" --mailstore "$(lab mailstore)" --use
step pcnctl profile add lab-adml --url "$url" --login "$adml_login"
step pcnctl doctor
step pcnctl schools list
step pcnctl doctor -p lab-adml
step pcnctl schools list -p lab-adml
step pcnctl users list --school "$adml_school" --profile Teacher -p lab-adml
step pcnctl schools show "$adml_school" -o json
student=$(lab accounts.student.login)
step pcnctl incident open --id DEMO-1 --title "demo: a hijacked student account"
step pcnctl sessions revoke "$student" --yes --incident DEMO-1
step pcnctl accounts block --school "$adml_school" --profile Student --dry-run
step pcnctl accounts block "$student" --yes --incident DEMO-1
step pcnctl accounts unblock "$student" --yes --incident DEMO-1
step pcnctl messaging block --profile Student --school "$adml_school" --yes --incident DEMO-1 --until 8h \
    --reason "drill"
step pcnctl messaging status
step pcnctl messaging unblock --incident DEMO-1 --yes
step pcnctl lab attack --data "$demo/lab" --messages 40 --rate 0
threat=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["messages"][0])' "$demo/lab/attack-truth.json")
step pcnctl senders --since 1h --mass --mass-messages 5
step pcnctl messages search --like "$threat" --save "$demo/threat.json" -o csv
step pcnctl messages purge --from-search "$demo/threat.json" --yes --incident DEMO-1
step pcnctl incident verify DEMO-1
step pcnctl schools export --affected --incident DEMO-1 -o markdown
step pcnctl incident show DEMO-1
step pcnctl audit verify-log
printf '\nDemo done: the lab ran at %s; profiles are in %s.\n' "$url" "$PCNCTL_CONFIG"
