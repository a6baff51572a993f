#!/usr/bin/env bash
# README's two commands, copied verbatim, on a pristine Debian 12 root file system (a debootstrap
# chroot with only Debian's own python3 added), the way a new user runs them on a fresh machine.
#
#   sudo scripts/device-lab/pristine.sh [ROOT]      # default ROOT: /var/tmp/edgefer-pristine
#
# The root is made anew every time (debootstrap --variant=minbase --include=python3,ca-certificates,git:
# Debian's python3, and git, since the user cloned the repository), with the /etc/hosts the Debian
# installer writes (debootstrap writes none, and `localhost` would not resolve); a fresh clone of
# this checkout's HEAD goes to /root/edgefer and ../shared is bind-mounted read-only beside it, as on
# a user's machine. The commands run as root inside with an empty
# environment (no pip configuration, caches or wheels of this machine), reaching only Debian's
# mirror and the package index. One thing of this machine's goes in: where its network re-signs
# TLS with a local CA (certificates in /usr/local/share/ca-certificates), those certificates join
# the root's trust store and PIP_CERT points pip at it (pip trusts only its own bundle otherwise):
# a property of this network, not of a user's machine. Each command's last lines and wall time
# are printed, then the root is unmounted (and kept for a look; delete it with rm -rf).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-/var/tmp/edgefer-pristine}
SHARED=$(cd ../shared && pwd)
[ "$(id -u)" = 0 ] || { echo "pristine: needs root (debootstrap, chroot, mount): run it with sudo" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "pristine: debootstrap not found: apt-get install debootstrap" >&2; exit 1; }

mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() { mkdir -p "$2"; mount "${@:3}" --bind "$1" "$2"; mounted+=("$2"); }

for m in "$ROOT"/proc "$ROOT"/sys "$ROOT"/dev/pts "$ROOT"/dev "$ROOT"/root/shared; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$ROOT"
t0=$(date +%s)
debootstrap --variant=minbase --include=python3,ca-certificates,git bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
echo "pristine: debootstrap bookworm: $(( $(date +%s) - t0 )) s; $(chroot "$ROOT" python3 --version)"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cert_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null
  cert_env=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  echo "pristine: this network's local CA certificates added to the root's trust store (PIP_CERT set)"
fi
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
git clone -q --no-local . "$ROOT/root/edgefer"
mount -t proc proc "$ROOT/proc"; mounted+=("$ROOT/proc")
mount -t sysfs sys "$ROOT/sys"; mounted+=("$ROOT/sys")
bind /dev "$ROOT/dev"
bind /dev/pts "$ROOT/dev/pts"
bind "$SHARED" "$ROOT/root/shared"
mount -o remount,bind,ro "$ROOT/root/shared"

# The commands of README.md's "Two commands" block, verbatim.
mapfile -t commands < <(awk '/^## Two commands/{f=1} f&&/^```bash/{b=1;next} b&&/^```/{exit} b&&!/^#/&&NF' README.md)
[ ${#commands[@]} = 2 ] || { echo "pristine: expected two commands in README.md, found ${#commands[@]}" >&2; exit 1; }
rc=0
for i in 0 1; do
  echo "pristine: command $((i + 1)): ${commands[i]}"
  t=$(date +%s)
  set +e
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    "${cert_env[@]}" bash -c "cd /root/edgefer && ${commands[i]}" >"$ROOT/root/command$((i + 1)).log" 2>&1
  r=$?
  set -e
  tail -n 6 "$ROOT/root/command$((i + 1)).log" | sed 's/^/    /'
  echo "pristine: command $((i + 1)): exit $r, $(( $(date +%s) - t )) s (log: $ROOT/root/command$((i + 1)).log)"
  [ $r = 0 ] || rc=$r
done
exit $rc
