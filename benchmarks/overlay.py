"""What the overlay page and the metrics cost the pipeline.

A real photo with a real face (detector + embedded classifier) is published to a `WebSink` and a
`MetricsSink` at several frame sizes, with 0, 1 and 3 MJPEG clients on loopback reading as fast as
they can. Prints, per case: the web sink's `publish` time (median and max, microseconds: all the
pipeline thread pays for the page), the metrics sink's `publish` time (median), JPEGs encoded per
published frame, frames each client received per second, and the process CPU time per published
frame (drawing + JPEG in the server threads, plus this script's own copy of each frame).

    python benchmarks/overlay.py --photo ../shared/data/photos/happy/Claire_Danes_0002.jpg \\
        --detector ../shared/models/face_detection_yunet_2026may.onnx [--seconds 5] [--fps 15]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from dataclasses import replace

import cv2
import numpy as np

from edgefer.edge.pipeline import build_pipeline
from edgefer.edge.sinks.metrics import MetricsSink
from edgefer.edge.sinks.web import WebConfig, WebSink
from edgefer.types import Frame


def reader(host: str, port: int, stop: threading.Event, counts: list[int], k: int) -> None:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    while not stop.is_set():
        counts[k] += s.recv(1 << 20).count(b"Content-Type: image/jpeg")
    s.close()


def run_case(result, size: tuple[int, int], clients: int, seconds: float, fps: float) -> dict:
    image = cv2.resize(result.frame.image, size)
    sx, sy = size[0] / result.frame.image.shape[1], size[1] / result.frame.image.shape[0]
    faces = [replace(f, face=replace(f.face, box=f.face.box * np.array([sx, sy, sx, sy], np.float32)))
             for f in result.faces]
    web = WebSink(WebConfig(enabled=True, port=0, max_fps=fps))
    metrics = MetricsSink()
    stop = threading.Event()
    counts = [0] * clients
    readers = [threading.Thread(target=reader, args=(*web.address, stop, counts, k)) for k in range(clients)]
    for t in readers:
        t.start()
    time.sleep(0.2)
    durations = []
    cpu0, t0 = time.process_time(), time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        frame = Frame(image=image.copy(), index=n, timestamp=time.time(), monotonic=time.monotonic())
        r = replace(result, frame=frame, faces=faces)
        a = time.perf_counter()
        web.publish(r)
        b = time.perf_counter()
        metrics.publish(r)
        durations.append((b - a, time.perf_counter() - b))
        n += 1
        time.sleep(max(0.0, t0 + n / fps - time.monotonic()))
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    stop.set()
    web.close()
    for t in readers:
        t.join()
    us = np.array(durations) * 1e6
    return {"size": f"{size[0]}x{size[1]}", "clients": clients, "published": n,
            "web_us_median": float(np.median(us[:, 0])), "web_us_max": float(us[:, 0].max()),
            "metrics_us_median": float(np.median(us[:, 1])),
            "encoded_per_frame": web.frames_encoded / n, "client_fps": [round(c / wall, 1) for c in counts],
            "cpu_ms_per_frame": 1000 * cpu / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--detector", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fps", type=float, default=15.0, help="publish rate, also the stream's max_fps")
    args = ap.parse_args()
    pipeline = build_pipeline(detector=args.detector, threads=1)
    result = pipeline.process_image(cv2.imread(args.photo))
    pipeline.close()
    if not result.faces:
        raise SystemExit(f"{args.photo}: no face found")
    print(f"{'size':>10} {'clients':>7} {'frames':>6} {'web publish us med/max':>23} {'metrics us':>10} {'jpeg/frame':>10} "
          f"{'client fps':>16} {'cpu ms/frame':>12}")
    for size in ((640, 480), (1280, 720)):
        for clients in (0, 1, 3):
            c = run_case(result, size, clients, args.seconds, args.fps)
            print(f"{c['size']:>10} {c['clients']:>7} {c['published']:>6} "
                  f"{c['web_us_median']:>11.1f}/{c['web_us_max']:<11.0f} {c['metrics_us_median']:>10.1f} "
                  f"{c['encoded_per_frame']:>10.2f} "
                  f"{','.join(map(str, c['client_fps'])) or '-':>16} {c['cpu_ms_per_frame']:>12.2f}")


if __name__ == "__main__":
    main()
