"""`edgefer run`: the real-time loop and the daemon (the same code under systemd or in a terminal)."""

from __future__ import annotations

from pathlib import Path

import click

from .bench import DetectorWidth


def overrides_from_flags(source: str | None, camera: bool, display: bool, jsonl: str | None, max_frames: int | None,
                         mqtt: str | None, model: Path | None, detector: Path | None, threads: int | None,
                         max_faces: int | None, loop: bool | None, web: bool | None,
                         precision: str | None = None, mqtt_wait: float | None = None,
                         sequence: bool | None = None, input_width: int | str | None = None) -> dict:
    """Command-line flags as a nested override of the configuration (None: not given)."""
    from edgefer.errors import UserError

    if source and camera:
        raise UserError("give either --source or --camera, not both")
    over: dict = {
        "source": {"uri": source, "loop": loop, "sequence": sequence},
        # paths on the command line are relative to the working directory, not to the config file
        "classifier": {"model": str(model.absolute()) if model else None, "threads": threads,
                       "precision": precision},
        "detector": {"model": str(detector.absolute()) if detector else None, "input_width": input_width},
        "pipeline": {"max_faces": max_faces},
        "jsonl": {"path": jsonl},
        "display": {"enabled": True if display else None},
        "web": {"enabled": web},
        "service": {"max_frames": max_frames},
    }
    if mqtt_wait is not None and not mqtt:
        raise UserError("--mqtt-wait needs --mqtt (in a configuration file: [mqtt] close_timeout_s)")
    if camera:
        from edgefer.edge.sources.camera import default_camera_uri

        over["source"]["uri"] = default_camera_uri()
    if mqtt:
        from edgefer.config import MqttConfig
        from edgefer.edge.sinks.mqtt_config import parse_url

        over["mqtt"] = parse_url(mqtt)
        if mqtt_wait is not None:
            over["mqtt"]["close_timeout_s"] = mqtt_wait
        if "enabled" in MqttConfig.model_fields:
            over["mqtt"]["enabled"] = True
    return over


@click.command("run")
@click.option("--source", "-s", metavar="URI", help="Video file, image folder, v4l2:///dev/video0, csi://0, picamera2://0, "
              "rtsp://... (overrides [source] uri).")
@click.option("--camera", is_flag=True, help="The platform's usual camera: CSI on a Jetson, picamera2 on a Raspberry Pi, "
              "else /dev/video0.")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML configuration (see `edgefer config --example`); flags override it.")
@click.option("--display", is_flag=True, help="Show the overlay in a window (needs a display).")
@click.option("--jsonl", metavar="PATH|-", help="Write one JSON line per frame to PATH, or '-' for stdout.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after N processed frames.")
@click.option("--mqtt", metavar="URL", help="Publish to a broker: mqtt://[user@]host[:port][/prefix] or mqtts://...")
@click.option("--mqtt-wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="At the end of a file or --max-frames, wait up to this long for the broker to take every message "
              "(default 3). Messages still undelivered then make the exit status 75.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="Emotion model (default: the embedded one).")
@click.option("--detector", type=click.Path(dir_okay=False, path_type=Path), help="YuNet ONNX file.")
@click.option("--input-width", type=DetectorWidth(), help="Detector input width (a multiple of 32), or auto "
              "(the default: the widest of 640/480/320 within 15 ms per frame here, measured at start).")
@click.option("--threads", type=click.IntRange(min=0), help="Inference threads per model (0: runtime default).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "int8"]), help="Without --model: the embedded FP32 or "
              "INT8 model, or auto (INT8 where this CPU computes it exactly and faster; the default).")
@click.option("--max-faces", type=click.IntRange(min=1), help="At most N faces classified per frame.")
@click.option("--loop/--no-loop", default=None, help="Restart a file or folder when it ends.")
@click.option("--sequence/--no-sequence", default=None, help="An image folder is one scene's frames in name order "
              "(a time-lapse): track and smooth across images. Default: each image is its own still, tracked and "
              "smoothed alone ([source] sequence).")
@click.option("--web/--no-web", default=None, help="Serve the overlay page (127.0.0.1 by default; see [web]).")
def run(source, camera, config_file, display, jsonl, max_frames, mqtt, mqtt_wait, model, detector, input_width, threads,
        precision, max_faces, loop, sequence, web):
    """Run detection and emotion recognition on a live source until stopped.

    \b
    Examples:
      edgefer run --source clip.mp4 --jsonl -            # JSON lines on stdout
      edgefer run --camera --display                      # the platform's camera, in a window
      edgefer run --config /etc/edgefer/config.toml       # as the systemd service runs it
      edgefer run --camera --mqtt mqtt://broker.local     # results to MQTT
      edgefer run --source photos/ --jsonl -              # every photo on its own
      edgefer run --source timelapse/ --sequence --jsonl -  # the images as frames of one scene

    Under systemd (Type=notify) it reports READY, STATUS and watchdog pings; SIGTERM stops it,
    SIGHUP reloads the configuration (an invalid one is refused and the old one kept).
    A missing camera is retried with backoff (status camera_unavailable), never fatal.

    Videos and cameras are tracked: a face keeps its track id and its emotions are smoothed over
    time. A folder of photos (or one photo) is a set of unrelated stills: each image starts with a
    fresh tracker, so track ids start at 1 in every image and smoothed values equal the image's own;
    --sequence tracks across the images instead (frames timed at [source] fps, default 30).
    """
    from edgefer.config import load_config
    from edgefer.edge.runner import build_runner
    from edgefer.edge.service import Service

    over = overrides_from_flags(source, camera, display, jsonl, max_frames, mqtt, model, detector, threads,
                                max_faces, loop, web, precision, mqtt_wait, sequence, input_width)
    return Service(lambda: load_config(config_file, over), build_runner).run()
