"""MQTT reliability, long versions of tests/edge/sinks/test_mqtt_reliability.py (same code:
tests/mqtt_scenarios.py), against a real Mosquitto on loopback. Prints one table row per scenario.

    python benchmarks/mqtt_reliability.py            # everything (about 6 minutes)
    python benchmarks/mqtt_reliability.py restarts partition
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mqtt_scenarios as S  # noqa: E402

SCENARIOS = {
    "restarts": ("20 broker restarts (SIGTERM) at 50 results/s", lambda d: S.broker_restarts(d, 20, rate=50, up_s=4.0, down_s=1.0)),
    "absent": ("broker absent at start, appears after 10 s", lambda d: S.broker_absent_at_start(d, absent_s=10, rate=50)),
    "partition": ("60 s partition (SIGSTOP), keepalive 10 s", lambda d: S.partition(d, partition_s=60, keepalive=10, rate=50)),
    "overflow": ("outage longer than the buffer (memory, 10000)", lambda d: S.overflow(d, capacity=10000, produced=50000)),
    "overflow-disk": ("outage longer than the buffer (disk, 10000)",
                      lambda d: S.overflow(d, capacity=10000, produced=30000, state_dir=d / "state")),
    "sigkill": ("daemon SIGKILLed during an outage, disk buffer", lambda d: S.sigkill_restart(d, count=3000)),
    "availability": ("availability / last will, keepalive 10 s", lambda d: S.availability(d, keepalive=10)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="*", choices=[*SCENARIOS, []], help="scenarios (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for key in args.which or list(SCENARIOS):
        title, fn = SCENARIOS[key]
        with tempfile.TemporaryDirectory() as d:
            t0 = time.monotonic()
            r = fn(Path(d))
            r["wall_s"] = round(time.monotonic() - t0, 1)
        rows.append((key, title, r))
        print(f"| {key} | {title} | " + ", ".join(f"{k}={v}" for k, v in r.items()) + " |", flush=True)
    print()
    print("| scenario | what | figures |")
    print("|---|---|---|")
    for key, title, r in rows:
        print(f"| {key} | {title} | " + ", ".join(f"{k}={v}" for k, v in r.items()) + " |")


if __name__ == "__main__":
    main()
