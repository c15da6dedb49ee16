#!/usr/bin/env bash
# PID 1 of a throwaway pim sandbox. The one implementation of the namespace setup, used by
# the end-to-end suite (tests/src/lib.rs) and by scripts/demo.
#
# Start it as a child, never in your own process:
#
#   unshare --mount --pid --fork --mount-proc --net --uts --ipc --propagation private \
#       --kill-child=KILL -- bash tests/sandbox/init.sh --policy FILE [--bin [NAME=]FILE]... \
#       [--lib [NAME=]FILE]... [--marker WORD]
#
# It mounts a tmpfs on /run (scratch space: /run/.sandbox) and one on /dev (a /dev of its
# own, see below), overlays /etc and /var with upper and work directories inside the /run
# tmpfs, puts tmpfs on /home and /tmp, pins NSS to `files`, starts a syslog collector on
# /dev/log (one line per datagram in /run/.sandbox/syslog.log), installs the bus policy FILE
# into /etc/dbus-1/system.d, starts the system dbus-daemon and brings `lo` up. Every
# --bin/--lib FILE is bind-mounted (read-only) as /run/.sandbox/bin/NAME or
# /run/.sandbox/lib/NAME (NAME defaults to the file's name), so it is reachable for every
# user whatever the permissions of its directories on the host.
#
# When the setup is done it prints one line `READY` on stdout, sends its own output to
# /run/.sandbox/init.log and then reads stdin until end of file. It exits then, and the
# kernel kills everything else in the PID namespace; the mount namespace (and with it every
# tmpfs and overlay above) goes away with the last process. Whoever started it holds the
# write end of its stdin: closing it, or dying, tears the sandbox down. Commands are run in
# the sandbox with `nsenter --target <host pid of this process> --mount --pid --net --uts
# --ipc -- /run/.sandbox/runas USER -- COMMAND...`.
#
# Nothing here writes outside the new mount namespace: /etc and /var are overlays whose
# upper layers live in the tmpfs on /run; /dev is a tmpfs of its own (what syslog gets stays
# in the sandbox); /usr and the host's /dev are never written.
set -euo pipefail
exec 2>&1

die() {
    printf 'sandbox init: %s\n' "$*"
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
policy=""
bins=()
libs=()
while (($#)); do
    case "$1" in
    --policy) policy=${2:?--policy needs a file}; shift 2 ;;
    --bin) bins+=("${2:?--bin needs a file}"); shift 2 ;;
    --lib) libs+=("${2:?--lib needs a file}"); shift 2 ;;
    --marker) shift 2 ;; # only there so that `pgrep -f WORD` finds this process
    *) die "unknown argument: $1" ;;
    esac
done

[[ $$ == 1 ]] || die "must be PID 1 of a new PID namespace (start it with unshare --pid --fork), not PID $$"
[[ -n $policy && -f $policy ]] || die "--policy FILE is required and must exist (got '${policy}')"

# Make sure nothing we mount can propagate back to the host, whatever unshare did.
mount --make-rprivate /

# Scratch space: a tmpfs over /run. Upper/work directories of the overlays live here, so
# they vanish with the namespace and never touch a host directory.
mount -t tmpfs -o mode=0755,size=512m sandbox-run /run
sb=/run/.sandbox
mkdir -p "$sb"/{etc-upper,etc-work,var-upper,var-work,bin,lib}
chmod 0755 "$sb" "$sb/bin" "$sb/lib"

# A /dev of our own, so that what is created there (/dev/log below, /dev/shm) never touches
# the host's: a tmpfs with bind mounts of the device nodes programs need, taken from a copy of
# the host's /dev saved under the scratch space and dropped again. /dev/pts stays the host's
# devpts instance, so that a terminal handed in (scripts/demo) keeps its name and `tty`
# works. ptmx is a node of our own, not a bind mount: the kernel looks for the devpts next to
# the ptmx that was opened, and a bind-mounted node would make it look in the host's /dev.
mkdir -p "$sb/host-dev"
mount --rbind /dev "$sb/host-dev"
mount -t tmpfs -o mode=0755,size=1m,nosuid sandbox-dev /dev
for node in null zero full random urandom tty console; do
    [[ -c $sb/host-dev/$node ]] || continue
    : >"/dev/$node"
    mount --bind "$sb/host-dev/$node" "/dev/$node"
done
mknod -m 0666 /dev/ptmx c 5 2
mkdir -m 0755 /dev/pts /dev/shm
if [[ -d $sb/host-dev/pts ]]; then
    mount --bind "$sb/host-dev/pts" /dev/pts
fi
mount -t tmpfs -o mode=1777 sandbox-shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
umount -R "$sb/host-dev"
rmdir "$sb/host-dev"

# Everything taken from the checkout is fixed in /run/.sandbox first: the checkout (or the
# target directory) may live under /tmp or /home, which are hidden below.
#
# The binaries under test, each bind-mounted read-only under its own (or the given) name.
bind_file() { # SPEC DIR, SPEC being PATH or NAME=PATH
    local spec=$1 dir=$2 name src
    if [[ $spec == *=* && ${spec%%=*} != */* ]]; then
        name=${spec%%=*} src=${spec#*=}
    else
        name=$(basename "$spec") src=$spec
    fi
    [[ -f $src ]] || die "no such file: $src"
    : >"$dir/$name"
    mount --bind "$src" "$dir/$name"
    mount -o remount,bind,ro "$dir/$name"
}
for f in "${bins[@]}"; do bind_file "$f" "$sb/bin"; done
for f in "${libs[@]}"; do bind_file "$f" "$sb/lib"; done
install -m 0755 "$here/runas.sh" "$sb/runas"
install -m 0644 "$policy" "$sb/policy.conf"
# The checkout stays reachable at its own path, wherever it is (tests pass paths inside it).
workspace=$(cd "$here/../.." && pwd)
mkdir -p "$sb/workspace"
mount --bind "$workspace" "$sb/workspace"

mount -t overlay sandbox-etc -o "lowerdir=/etc,upperdir=$sb/etc-upper,workdir=$sb/etc-work" /etc
mount -t overlay sandbox-var -o "lowerdir=/var,upperdir=$sb/var-upper,workdir=$sb/var-work" /var
mount -t tmpfs -o mode=0755 sandbox-home /home
mount -t tmpfs -o mode=1777 sandbox-tmp /tmp
mkdir -p /run/lock /run/user /run/sudo
chmod 1777 /run/lock
if [[ ! -e $workspace/tests/sandbox/init.sh ]]; then
    mkdir -p "$workspace"
    mount --bind "$sb/workspace" "$workspace"
fi

# Users and groups come from the (overlaid) files only: no sssd, no systemd-userdb, no LDAP.
cat >/etc/nsswitch.conf <<'EOF'
# pim sandbox: everything from local files
passwd:         files
group:          files
shadow:         files
gshadow:        files
hosts:          files
networks:       files
protocols:      files
services:       files
ethers:         files
rpc:            files
netgroup:       files
EOF

# Login shells (bash -l, su -, sudo -i) reset PATH from /etc/profile; keep ours first.
cat >/etc/profile.d/pim-sandbox.sh <<'EOF'
case ":$PATH:" in
*:/run/.sandbox/bin:*) ;;
*) PATH="/run/.sandbox/bin:$PATH" ;;
esac
export PATH
EOF

hostname pim-sandbox
cat >/etc/hosts <<'EOF'
127.0.0.1	localhost
127.0.1.1	pim-sandbox
::1		localhost ip6-localhost ip6-loopback
EOF
ip link set lo up

# wait_for WHAT PID LOG COMMAND...: runs COMMAND (output discarded) until it succeeds; dies
# showing LOG when process PID (the one starting up) exits first or 60 s pass.
wait_for() {
    local what=$1 pid=$2 log=$3 deadline=$((SECONDS + 60))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log"
            die "$what exited during startup"
        fi
        if ((SECONDS > deadline)); then
            cat "$log"
            die "$what did not answer within 60 s"
        fi
        sleep 0.05
    done
}

# Syslog: a collector on /dev/log (in our own /dev, so nothing reaches the host's logs) that
# appends every datagram, bytes unchanged, as one line to $sb/syslog.log. It binds a
# temporary name and renames it into place, so /dev/log appears only once it is ready.
command -v python3 >/dev/null 2>&1 || die "python3 is not installed: run scripts/deps"
cat >"$sb/syslogd.py" <<'EOF'
import os, socket, sys

path, log = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path + ".new")
os.chmod(path + ".new", 0o666)
with open(log, "ab", buffering=0) as out:
    os.rename(path + ".new", path)
    while True:
        out.write(sock.recv(65536) + b"\n")
EOF
python3 -I "$sb/syslogd.py" /dev/log "$sb/syslog.log" >"$sb/syslogd.err" 2>&1 &
wait_for "the syslog collector" $! "$sb/syslogd.err" test -S /dev/log

[[ -s /etc/machine-id || -s /var/lib/dbus/machine-id ]] || dbus-uuidgen --ensure=/etc/machine-id

# The system bus, with our policy file exactly as packaged.
mkdir -p /etc/dbus-1/system.d /run/dbus
install -m 0644 "$sb/policy.conf" /etc/dbus-1/system.d/org.pim.Manager1.conf
dbus-daemon --system --nofork --nopidfile --nosyslog >"$sb/dbus.log" 2>&1 &
wait_for dbus-daemon $! "$sb/dbus.log" busctl --system --no-pager list

echo READY
exec >>"$sb/init.log" 2>&1

# Wait for the owner to go away. `read` returns non-zero at end of file; any line is ignored.
while true; do
    if ! IFS= read -r _; then
        break
    fi
done
echo "stdin closed: tearing the sandbox down"
exit 0
