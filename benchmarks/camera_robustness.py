"""What a camera does to accuracy: labelled photos degraded as a camera degrades its frames, through the
full pipeline (detector, aligner, classifier), for one or more models.

Each condition changes the whole frame before detection, as a camera would: the face made 40-80 px
wide (the frame downscaled), then JPEG compression, a live H.264 stream at a low bitrate (the frame
put in a 640 x 480 picture and streamed as a short clip through libx264: PyAV, the `test` extra),
sensor noise in low light, motion blur, or exposure set wrong (the steps of `train/camera.py`; the
training recipe's `--camera-aug` applies all but H.264 to crops). Seeded, so every model sees the same
frames. Prints accuracy per condition and model, with the faces found, and angry and fear recall.

    python benchmarks/camera_robustness.py 1.3.0=edgefer/models/edgefer-fer-v1.onnx B=runs/i24-b.onnx \\
        --photos ../shared/data/photos --detector ../shared/models/face_detection_yunet_2026may.onnx
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from candidates import named_models, run, write_json  # beside this file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_clips import background  # noqa: E402

from edgefer.data import FaceSet
from edgefer.edge.classifier import Classifier
from edgefer.edge.pipeline import build_pipeline
from edgefer.evaluate import compute_metrics, predict_faceset
from edgefer.train import camera

Frame = np.ndarray


def small(face_px: int) -> Callable[[Frame, float, np.random.Generator], Frame]:
    def f(img: Frame, face_w: float, rng: np.random.Generator) -> Frame:
        s = min(1.0, face_px / max(face_w, 1.0))
        return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img
    return f


def then(first: Callable, step: Callable[[Frame, np.random.Generator], Frame]) -> Callable:
    return lambda img, w, rng: step(first(img, w, rng), rng)


#: Conditions whose name says so put the frame in a camera picture of this size; the detector then
#: sees the picture at full resolution (its input width 640), so that what differs from the small face
#: alone is the picture and its compression, not the detector's resolution. (At the daemon's default
#: input width of 320, YuNet finds 31% of 48-px faces in such a picture and 77% of 64-px ones:
#: benchmarks/face_size.py.)
PICTURE = "in a 640x480 picture"


def in_picture(img: Frame, rng: np.random.Generator) -> Frame:
    """The frame at the centre of a 640 x 480 picture, on the textured background of the test clips."""
    h, w = img.shape[:2]
    canvas = background(max(640, w), max(480, h), seed=0)
    y, x = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[y:y + h, x:x + w] = img
    return canvas


def h264_clip(kbps: int) -> Callable[[Frame, np.random.Generator], Frame]:
    """The frame in a 640 x 480 picture, as the last frame of a short live H.264 stream at `kbps`
    (`camera.h264_stream`)."""
    return lambda img, rng: camera.h264_stream(in_picture(img, rng), kbps, rng, frames=8)


def conditions(face_px: int) -> dict[str, Callable[[Frame, float, np.random.Generator], Frame]]:
    sm = small(face_px)
    return {
        "clean": lambda img, w, rng: img,
        f"face {face_px} px": sm,
        f"face {face_px} px + JPEG q20": then(sm, lambda im, rng: camera.jpeg(im, 20)),
        f"face {face_px} px + low light (gain 0.45, noise)": then(
            sm, lambda im, rng: camera.sensor_noise(camera.exposure(im, 1.0, 0.45), 5.0, rng)),
        f"face {face_px} px {PICTURE}": then(sm, in_picture),
        f"face {face_px} px {PICTURE}, H.264 500 kbit/s": then(sm, h264_clip(500)),
        f"face {face_px} px {PICTURE}, H.264 250 kbit/s": then(sm, h264_clip(250)),
        f"face {face_px} px + motion blur 5 px": then(sm, lambda im, rng: camera.motion_blur(im, 5, float(rng.uniform(0, 180)))),
        "under-exposed (gamma 1.8, gain 0.7)": lambda img, w, rng: camera.exposure(img, 1.8, 0.7),
        "over-exposed (gamma 0.6, gain 1.3)": lambda img, w, rng: camera.exposure(img, 0.6, 1.3),
        f"face {face_px} px, all of it": then(sm, lambda im, rng: camera.jpeg(camera.sensor_noise(
            camera.motion_blur(camera.exposure(im, 1.3, 0.7), 3, float(rng.uniform(0, 180))), 3.0, rng), 30)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=PATH.onnx")
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--detector", type=Path)
    ap.add_argument("--face-px", type=int, default=48, help="face width the frame is brought down to")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--only", help="only the conditions whose name contains this (e.g. H.264)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from edgefer.edge.photos import class_folders, list_images, read_image

    named = named_models(a.models)
    pipe = build_pipeline(model=named[0][1], detector=a.detector)
    full = build_pipeline(model=named[0][1], detector=a.detector, input_width=640)  # for PICTURE conditions
    files = [(img, label) for sub, label in class_folders(a.photos) for img in list_images(sub)]
    images = [(read_image(p), label) for p, label in files]
    images = [(im, label) for im, label in images if im is not None]
    widths = []
    for im, _ in images:  # the face's width in the clean frame, for scaling
        faces = pipe.detector.detect(im)
        widths.append(max((float(f.box[2]) for f in faces), default=0.0))
    classifiers = {name: Classifier.open(Path(path)) for name, path in named}
    results: dict[str, dict[str, dict]] = {}
    for cname, cond in conditions(a.face_px).items():
        if a.only and a.only not in cname:
            continue
        rng = np.random.default_rng(a.seed)
        det = full.detector if PICTURE in cname else pipe.detector
        crops, labels, no_face = [], [], 0
        for (im, label), w in zip(images, widths):
            frame = cond(im, w, rng)
            faces = det.detect(frame)
            if not faces:
                no_face += 1
                continue
            crop, kept = pipe.aligner.align(frame, [max(faces, key=lambda f: float(f.box[2] * f.box[3]))])
            if not len(kept):
                no_face += 1
                continue
            crops.append(crop[0])
            labels.append(label)
        fs = FaceSet(np.stack(crops), np.asarray(labels, np.int64), np.full(len(labels), ""), no_face=no_face)
        results[cname] = {}
        for name, clf in classifiers.items():
            probs, inten, finite = predict_faceset(clf, fs)
            results[cname][name] = compute_metrics(fs.labels, probs, inten, finite, None, no_face)
    pipe.close()
    full.close()

    names = [n for n, _ in named]
    print(f"photos: {a.photos}, {len(images)} images; accuracy % (faces missed count as errors); "
          f"angry / fear recall % in brackets")
    print("| condition | faces found | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for cname, per in results.items():
        m0 = next(iter(per.values()))
        cells = [f"{100 * m['accuracy']:.1f}, on found {100 * m['accuracy_on_faces']:.1f} "
                 f"({100 * (m['per_class_recall']['angry'] or 0):.0f} / "
                 f"{100 * (m['per_class_recall']['fear'] or 0):.0f})" for m in per.values()]
        print(f"| {cname} | {m0['n']} of {m0['n'] + m0['no_face']} | " + " | ".join(cells) + " |")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    run(main, "camera_robustness")
