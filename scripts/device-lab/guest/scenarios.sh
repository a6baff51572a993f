#!/bin/bash
# The lab's service scenarios, run once inside the VM by edgefer-lab.service (as root, under the
# VM's real systemd). Each scenario prints one line `LAB {json}` on the serial console; lab.py on
# the host collects them into its table. Every wait is bounded.
set -u
export PATH=/opt/edgefer/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CONF=/etc/edgefer/config.toml

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
result() {  # name ok figure: one line to the kernel log, which the serial console shows
  python3 -c 'import json,sys; print("LAB " + json.dumps({"scenario": sys.argv[1], "ok": sys.argv[2] == "1", "figure": sys.argv[3]}), flush=True)' "$1" "$2" "$3" | tee /dev/kmsg
}
wait_for() {  # seconds command...: poll until the command succeeds; 0 if it did
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
mainpid() { systemctl show -p MainPID --value edgefer; }
main_is_not() { local m; m=$(mainpid); [ "$m" != "$1" ] && [ "$m" != 0 ]; }  # a new main process runs
frames() {  # count faces messages arriving within $1 seconds
  timeout "$1" mosquitto_sub -h 127.0.0.1 -t 'edgefer/+/faces' -q 1 2>/dev/null | wc -l
}
next_frame() {  # seconds until the next faces message (at most $1), or "none"
  local t0; t0=$(now)
  if mosquitto_sub -h 127.0.0.1 -t 'edgefer/+/faces' -C 1 -W "$1" >/dev/null 2>&1; then since "$t0"; else echo none; fi
}

result "boot to lab start" 1 "$(cut -d' ' -f1 /proc/uptime) s since kernel start"

# -- camera ---------------------------------------------------------------------------------
modprobe vivid n_devs=1 && wait_for 10 test -e /dev/video0
result "vivid camera" "$([ -e /dev/video0 ] && echo 1 || echo 0)" "$(ls /dev/video* 2>/dev/null | tr '\n' ' ')"

# -- install and start the service as shipped -------------------------------------------------
edgefer install-service --source v4l2:///dev/video0 >/tmp/install.log 2>&1
rc=$?
python3 - "$CONF" <<'PY'
import sys
p = sys.argv[1]
t = open(p).read()
t = t.replace("[detector]\n", '[detector]\nmodel = "/opt/lab/yunet.onnx"\n', 1)
t += '\n[mqtt]\nhost = "127.0.0.1"\ndevice_id = "lab"\n'
# Under TCG a frame takes seconds (about 50x a real board): give the hang detector room below
# WatchdogSec=30, or systemd's watchdog (rightly) kills a pipeline this slow.
assert "hang_timeout_s = 10.0\n" in t
t = t.replace("hang_timeout_s = 10.0\n", "hang_timeout_s = 25.0\n", 1)
open(p, "w").write(t)
PY
cp "$CONF" /tmp/good.toml
result "install-service" "$([ $rc = 0 ] && echo 1 || echo 0)" "$(tail -1 /tmp/install.log)"
systemctl daemon-reload
t0=$(now)
timeout 300 systemctl enable --now edgefer >/tmp/enable.log 2>&1
rc=$?
result "READY (enable --now returns)" "$([ $rc = 0 ] && systemctl is-active -q edgefer && echo 1 || echo 0)" "$(since "$t0") s"

n=$(frames 10)
result "frames from /dev/video0 over MQTT" "$([ "$n" -gt 0 ] && echo 1 || echo 0)" "$n frames in 10 s"
st=$(systemctl status edgefer --no-pager 2>/dev/null | grep -m1 'Status:' | sed 's/^ *//')
result "systemctl status line" "$(echo "$st" | grep -q streaming && echo 1 || echo 0)" "$st"

# -- reload -----------------------------------------------------------------------------------
pid=$(mainpid); t0=$(now)
timeout 120 systemctl reload edgefer
next=$(next_frame 180)
ok=$([ "$(mainpid)" = "$pid" ] && systemctl is-active -q edgefer && [ "$next" != none ] && echo 1 || echo 0)
result "reload, good config" "$ok" "$(since "$t0") s from reload to frames again, same PID"
echo 'this is [not toml' >>"$CONF"
timeout 60 systemctl reload edgefer
sleep 2
next=$(next_frame 60)
ok=$(systemctl is-active -q edgefer && journalctl -u edgefer --no-pager | grep -q 'reload refused' && [ "$next" != none ] && echo 1 || echo 0)
result "reload, broken config (old one kept)" "$ok" "$(journalctl -u edgefer --no-pager | grep -m1 'reload refused' | sed 's/.*: reload/reload/' | cut -c1-120)"
n=$(journalctl -u edgefer --no-pager -o cat SYSLOG_IDENTIFIER=edgefer | grep -c .)
result "journald has the daemon's log lines" "$(journalctl -u edgefer --no-pager -o cat | grep -q 'reload refused' && echo 1 || echo 0)" \
  "$n lines from the daemon (level WARNING), the refused reload among them"
cp /tmp/good.toml "$CONF"

# -- the camera for the camera: unbind and bind the driver ---------------------------------------
t0=$(now)
echo vivid.0 >/sys/bus/platform/drivers/vivid/unbind
sleep 3
gone=$([ -e /dev/video0 ] && echo no || echo yes)
echo vivid.0 >/sys/bus/platform/drivers/vivid/bind
next=$(next_frame 180)
ok=$([ "$gone" = yes ] && [ "$next" != none ] && echo 1 || echo 0)
result "camera vanishes and returns" "$ok" "device gone: $gone; frames again $next s after it returned (backoff_max_s 30)"

# -- the watchdog restarts a hung daemon --------------------------------------------------------
restarts0=$(systemctl show -p NRestarts --value edgefer)
pid=$(mainpid); t0=$(now)
kill -STOP "$pid"
# (wait_for runs its command again each time: a "$(mainpid)" in its arguments would be read once,
# and the wait would always run its full 120 s, as it did before 2026-12-07)
wait_for 120 main_is_not "$pid"
t_new=$(since "$t0")
wait_for 120 systemctl is-active -q edgefer
t_ready=$(since "$t0")
next=$(next_frame 180)
ok=$([ "$(systemctl show -p NRestarts --value edgefer)" -gt "$restarts0" ] && [ "$next" != none ] && echo 1 || echo 0)
result "watchdog kills a hung daemon, systemd restarts it" "$ok" "$(since "$t0") s from SIGSTOP to frames again (new process $t_new s, READY $t_ready s after SIGSTOP; WatchdogSec=30, RestartSec=5; $(journalctl -u edgefer --no-pager -o cat | grep -m1 -i 'watchdog timeout' | cut -c1-60))"

# -- hardening ------------------------------------------------------------------------------------
pid=$(mainpid)
w_state=$(nsenter -t "$pid" -m -S "$(id -u edgefer)" -G "$(id -g edgefer)" sh -c 'touch /var/lib/edgefer/probe && echo ok' 2>&1)
w_etc=$(nsenter -t "$pid" -m -S "$(id -u edgefer)" -G "$(id -g edgefer)" sh -c 'touch /etc/probe 2>&1; touch /opt/probe 2>&1' | head -1)
ok=$([ "$w_state" = ok ] && [ ! -e /etc/probe ] && [ ! -e /opt/probe ] && echo 1 || echo 0)
result "service user writes only its StateDirectory" "$ok" "state: $w_state; /etc: ${w_etc:-written!}"
score=$(systemd-analyze security edgefer --no-pager 2>/dev/null | grep -o 'Overall exposure level for edgefer.service: [0-9.]*' | grep -o '[0-9.]*$')
result "systemd-analyze security <= 2.0" "$(python3 -c "print(int(float('${score:-99}') <= 2.0))")" "${score:-none}"
listen=$(ss -Hltnup 2>/dev/null | grep "pid=$pid," | awk '{print $5}' | tr '\n' ' ')
bad=$(echo "$listen" | tr ' ' '\n' | grep -v -e '^$' -e '^127\.0\.0\.1:' -e '^\[::1\]:' | wc -l)
result "nothing listens beyond 127.0.0.1" "$([ "$bad" = 0 ] && echo 1 || echo 0)" "listening: ${listen:-nothing}"
result "MQTT buffer on disk in the StateDirectory" "$([ -d /var/lib/edgefer/mqtt ] && echo 1 || echo 0)" "$(ls /var/lib/edgefer/mqtt 2>/dev/null | tr '\n' ' ')"

# -- a bad configuration exits 78 and does not crash-loop ---------------------------------------
echo 'unknown_key = 1' >>"$CONF"
timeout 60 systemctl restart edgefer >/dev/null 2>&1
sleep 8
code=$(systemctl show -p ExecMainStatus --value edgefer)
r1=$(systemctl show -p NRestarts --value edgefer); sleep 6; r2=$(systemctl show -p NRestarts --value edgefer)
ok=$([ "$code" = 78 ] && [ "$r1" = "$r2" ] && ! systemctl is-active -q edgefer && echo 1 || echo 0)
result "bad config: exit 78, no restart loop" "$ok" "exit $code, restarts $r1 -> $r2 in 6 s; $(journalctl -u edgefer --no-pager | grep -m1 'edgefer: error' | sed 's/.*edgefer: error/edgefer: error/' | cut -c1-100)"
cp /tmp/good.toml "$CONF"
timeout 300 systemctl restart edgefer

# -- SIGTERM stops within 5 s -----------------------------------------------------------------------
next_frame 180 >/dev/null
pid=$(mainpid)
t0=$(now)
timeout 30 systemctl stop edgefer
took=$(since "$t0")
res=$(systemctl show -p Result --value edgefer)
how="$(systemctl show -p ExecMainCode --value edgefer)/$(systemctl show -p ExecMainStatus --value edgefer)"
last="$(journalctl -u edgefer --no-pager -o cat _PID="$pid" | tail -n 6 | tr '\n' '|' | cut -c1-600)"
result "stop (SIGTERM) within 5 s, clean exit" "$(python3 -c "print(int($took < 5.0 and '$res' == 'success'))")" \
  "$took s, result $res (code/status $how); last lines: $last"

echo "LAB-DONE" | tee /dev/kmsg
