#!/usr/bin/env bash
# Runs a command as a user inside the pim sandbox, like a fresh login would: its own process,
# the user's uid, primary gid and supplementary groups read from the group database right now
# (setpriv --init-groups), a clean environment and the home directory as working directory.
# init.sh installs this file as /run/.sandbox/runas.
#
#   runas USER [--timeout SECONDS] [--groups G1,G2] [--env NAME=VALUE]... [--] COMMAND [ARG]...
#
# --timeout kills the command (TERM, then KILL 5 s later) when it runs longer; exit status 124
# tells that it happened. --groups gives exactly these supplementary groups instead of the
# ones in the group database (none when LIST is empty), like a process that logged in before
# a change and still carries its old groups.
# `pim` and `pimd` are found on PATH (/run/.sandbox/bin comes first).
set -euo pipefail

die() {
    printf 'runas: %s\n' "$*" >&2
    exit 125
}

(($# >= 1)) || die "usage: runas USER [--timeout SECONDS] [--groups LIST] [--env NAME=VALUE]... [--] COMMAND..."
user=$1
shift
timeout_s=""
groups=""
fixed_groups=false
extra_env=()
while (($#)); do
    case "$1" in
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --groups) groups=${2?}; fixed_groups=true; shift 2 ;;
    --env) extra_env+=("${2:?}"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
    esac
done
(($# >= 1)) || die "no command given"

entry=$(getent passwd "$user") || die "no such user in the sandbox: $user"
IFS=: read -r name _ _ gid _ home shell <<<"$entry"
[[ -d $home ]] || home=/
[[ -n $shell ]] || shell=/bin/sh

if ! $fixed_groups; then
    group_opts=(--init-groups)
elif [[ -z $groups ]]; then
    group_opts=(--clear-groups)
else
    group_opts=(--groups "$groups")
fi
cmd=(setpriv --reuid "$name" --regid "$gid" "${group_opts[@]}"
    env -i -C "$home"
    "PATH=/run/.sandbox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "HOME=$home" "USER=$name" "LOGNAME=$name" "SHELL=$shell" "LANG=C.UTF-8"
    "${extra_env[@]}" "$@")
if [[ -n $timeout_s ]]; then
    exec timeout --kill-after=5 "$timeout_s" "${cmd[@]}"
fi
exec "${cmd[@]}"
