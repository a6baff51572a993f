"""INT8 drift and agreement on emulated CPUs: x86-64 without VNNI, Raspberry Pi 4 and 5 (Arm64).

    python benchmarks/emulated_cpus.py [--faces 3579] [--arm-faces 500] [--photos 60] [--cpus ...]

For each CPU (this one, and under qemu-user-static: `Haswell-noTSX`, `cortex-a72`, `cortex-a76`;
scripts/emucpu.py) it runs, on that CPU, the classifier artifacts on the first PublicTest faces and
YuNet on the first photos, and prints one table:

- classifier: top-1 agreement of each artifact with FP32 computed *here* (x86), the accuracy
  change, the intensity RMSE change (vs FER+ votes), the largest probability difference, and the
  largest difference from the same artifact computed here (0: bit-identical);
- FP32 itself on the emulated CPU (`--fp32-faces`; with `--fp32` on the Arm CPUs too);
- detector: faces found by FP32 YuNet here and by the INT8 YuNet on that CPU, and the largest box
  coordinate difference from the INT8 YuNet computed here;
- the daemon (`edgefer run --jsonl -`) on a recorded 640 x 480 one-face clip on that CPU, FP32 and
  INT8 (`--precision`): frames with a face, agreement of the reported emotion with the FP32 daemon
  here, largest probability difference (`--clip-frames`, 0 to skip).

The artifacts: the shipped INT8 model (cpu scheme), and with `--calib SET` the tensorrt-scheme one
converted now; YuNet INT8 (cpu scheme) converted now from `--detector` with the photos as
calibration. Figures under emulation are what the real CPUs compute; their speed is not (none is
reported). Takes about 20 minutes with the defaults, pinned to one core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import emucpu  # noqa: E402

WORKER = r"""
import json, sys, time
import cv2, numpy as np
from edgefer.convert.schemes import cpu_kind
from edgefer.convert import probe
from edgefer.edge.classifier import Classifier
from edgefer.edge.backends import open_backend
from edgefer.edge.detector import YunetDetector
job = json.load(open(sys.argv[1]))
pixels = np.load(job["faces"])
out = {"cpu_kind": cpu_kind(), **probe.exactness().to_dict(), "classifier": {}, "detector": {}}
for name, (path, n) in job["classifiers"].items():
    t = time.time()
    p, i, f = Classifier.open(path, threads=1).classify(pixels[:n])
    np.savez(job["out"] + f".{name}.npz", p=p, i=i)
    out["classifier"][name] = round(time.time() - t, 1)
for name, path in job["detectors"].items():
    det = YunetDetector(open_backend(path, threads=1), input_width=320)
    boxes = [[f.box.tolist() for f in det.detect(cv2.imread(p, cv2.IMREAD_COLOR))] for p in job["photos"]]
    out["detector"][name] = boxes
print(json.dumps(out))
"""


def run_on(cpu: str, job: dict, tmp: Path, arm: tuple[Path, Path] | None) -> dict:
    spec = tmp / f"job-{cpu}.json"
    job = {**job, "out": str(tmp / cpu)}
    spec.write_text(json.dumps(job))
    if cpu == "native":
        prefix, env = [sys.executable], None
    elif cpu.startswith("cortex") or cpu.startswith("neoverse"):
        root, site = arm
        prefix, env = emucpu.arm(root, cpu), emucpu.arm_env(root, site)
    else:
        prefix, env = emucpu.x86(cpu), None
    r = subprocess.run([*prefix, "-c", WORKER, str(spec)], capture_output=True, text=True, env=env, cwd="/")
    if r.returncode != 0:
        raise SystemExit(f"{cpu}: worker failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def daemon(cpu: str, precision: str, clip: Path, yunet: Path, frames: int, arm: tuple[Path, Path] | None) -> list:
    """Per frame: the first face's probabilities (or None), from `edgefer run` on `cpu`."""
    if cpu == "native":
        prefix, env = [sys.executable], None
    elif cpu.startswith(("cortex", "neoverse")):
        prefix, env = emucpu.arm(arm[0], cpu), emucpu.arm_env(*arm)
    else:
        prefix, env = emucpu.x86(cpu), None
    # one detector width on every CPU (auto would time the emulated ones as slow and pick 320), so that
    # frames compare classifier against classifier
    r = subprocess.run([*prefix, "-m", "edgefer", "run", "--source", str(clip), "--precision", precision,
                        "--detector", str(yunet), "--input-width", "320", "--max-frames", str(frames), "--jsonl", "-"],
                       capture_output=True, text=True, env=env, cwd="/", timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{cpu}: edgefer run failed: {r.stderr.strip()[-800:]}")
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    return [np.array(list(ln["faces"][0]["probabilities"].values())) if ln["faces"] else None for ln in lines]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).mean()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--faces", type=int, default=3579, help="PublicTest faces on x86 CPUs")
    ap.add_argument("--arm-faces", type=int, default=500, help="PublicTest faces on Arm CPUs")
    ap.add_argument("--photos", type=int, default=60, help="photos for the detector (spread over the classes)")
    ap.add_argument("--cpus", default=f"native,{emucpu.X86_NO_VNNI},cortex-a72,cortex-a76")
    ap.add_argument("--fp32", action="store_true", help="also run FP32 on the Arm CPUs (about 0.45 s a face)")
    ap.add_argument("--fp32-faces", type=int, default=50, help="FP32 faces on emulated x86 (about 5 s a face: "
                    "its AVX2 floating point is emulated slowly)")
    ap.add_argument("--calib", type=Path, help="calibration set: also measure the tensorrt-scheme artifact")
    ap.add_argument("--clip-frames", type=int, default=30, help="frames of the daemon run on each CPU (0: none)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()

    from edgefer.contract import ferplus_shares
    from edgefer.convert.chain import Request, convert
    from edgefer.convert.drift import iter_images
    from edgefer.data import load_faces
    from edgefer.edge.classifier import default_model_path
    from edgefer.edge.precision import embedded_int8_path

    data = load_faces(a.shared / "data/fer2013/fer2013_trainval.npz").split("PublicTest")
    photos = iter_images(a.shared / "data/photos")
    photos = [str(photos[k]) for k in np.linspace(0, len(photos) - 1, a.photos).astype(int)]
    yunet = a.shared / "models/face_detection_yunet_2026may.onnx"
    cpus = a.cpus.split(",")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        np.save(tmp / "faces.npy", data.pixels)
        yunet_int8 = tmp / "yunet.int8.onnx"
        convert(Request(model=yunet, target="onnx-int8", out=yunet_int8, calib=a.shared / "data/photos"))
        artifacts = {"int8-cpu": embedded_int8_path()}
        if a.calib:
            artifacts["int8-tensorrt"] = tmp / "trt.onnx"
            convert(Request(model=default_model_path(), target="onnx-int8", out=artifacts["int8-tensorrt"],
                            calib=a.calib, int8_for="tensorrt"))
        arm = None
        if any(c.startswith(("cortex", "neoverse")) for c in cpus):
            arm = (emucpu.arm_root(log=lambda m: print(m, file=sys.stderr)), emucpu.project_site(tmp / "site"))
        results = {}
        for cpu in cpus:
            n = a.arm_faces if cpu.startswith(("cortex", "neoverse")) else a.faces
            models = {k: (str(v), n) for k, v in artifacts.items()}
            if cpu == "native" or a.fp32 or not cpu.startswith(("cortex", "neoverse")):
                is_arm = cpu.startswith(("cortex", "neoverse"))
                models["fp32"] = (str(default_model_path()), n if cpu == "native" or is_arm else min(n, a.fp32_faces))
            dets = {"int8": str(yunet_int8)} | ({"fp32": str(yunet)} if cpu == "native" else {})
            print(f"# {cpu}: {n} faces, {len(photos)} photos ...", file=sys.stderr, flush=True)
            results[cpu] = run_on(cpu, {"faces": str(tmp / "faces.npy"), "classifiers": models, "detectors": dets,
                                        "photos": photos}, tmp, arm)
            results[cpu]["n"] = n
            results[cpu]["arrays"] = {k: dict(np.load(tmp / f"{cpu}.{k}.npz")) for k in models}
        runs: dict[tuple[str, str], list] = {}
        if a.clip_frames:
            from make_clips import make_moving_face_clip

            clip = tmp / "face640.avi"
            make_moving_face_clip(a.shared / "data/photos/happy/Claire_Danes_0002.jpg", clip, frames=a.clip_frames, width=640,
                      height=480)
            for cpu in cpus:
                for precision in ("fp32", "int8"):
                    print(f"# {cpu}: edgefer run --precision {precision} ...", file=sys.stderr, flush=True)
                    runs[cpu, precision] = daemon(cpu, precision, clip, yunet, a.clip_frames, arm)

    labels = data.labels
    shares = ferplus_shares(data.votes)
    ref = results["native"]["arrays"]["fp32"]
    rows = []
    for cpu, res in results.items():
        n = res["n"]
        for name, arr in res["arrays"].items():
            m = len(arr["p"])
            p_ref, i_ref = ref["p"][:m], ref["i"][:m]
            same = results["native"]["arrays"][name]
            rows.append({
                "cpu": cpu, "kind": res["cpu_kind"], "full_range_exact": res["full_range"], "model": name, "faces": m,
                "agreement": float((arr["p"].argmax(1) == p_ref.argmax(1)).mean()),
                "accuracy_change_points": 100 * float((arr["p"].argmax(1) == labels[:m]).mean()
                                                      - (p_ref.argmax(1) == labels[:m]).mean()),
                "intensity_rmse_change": rmse(arr["i"], shares[:m]) - rmse(i_ref, shares[:m]),
                "max_prob_diff_vs_x86_fp32": float(np.abs(arr["p"] - p_ref).max()),
                "max_diff_vs_same_here": float(np.abs(arr["p"] - same["p"][:m]).max()),
            })
        del n
    print("| CPU | kind (measured) | full-range INT8 exact | model | faces | top-1 agreement with x86 FP32 | "
          "accuracy change | intensity RMSE change | largest prob. diff | largest diff vs same model here |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cpu']} | {r['kind']} | {'yes' if r['full_range_exact'] else 'NO'} | {r['model']} | {r['faces']} | "
              f"{100 * r['agreement']:.2f}% | {r['accuracy_change_points']:+.2f} pts | {r['intensity_rmse_change']:+.4f} | "
              f"{r['max_prob_diff_vs_x86_fp32']:.4f} | {r['max_diff_vs_same_here']:.1e} |")
    found_ref = [len(b) > 0 for b in results["native"]["detector"]["fp32"]]
    here = results["native"]["detector"]["int8"]
    print("\n| CPU | photos | faces found, FP32 here | faces found, INT8 there | largest box difference vs INT8 here (px) |")
    print("|---|---|---|---|---|")
    det_rows = []
    for cpu, res in results.items():
        boxes = res["detector"]["int8"]
        found = [len(b) > 0 for b in boxes]
        diff = max((float(np.abs(np.array(b) - np.array(h)).max()) if len(b) == len(h) and b else
                    (0.0 if not b and not h else float("inf")) for b, h in zip(boxes, here)), default=0.0)
        det_rows.append({"cpu": cpu, "photos": len(boxes), "found_fp32_here": float(np.mean(found_ref)),
                         "found_int8": float(np.mean(found)), "max_box_diff": diff})
        print(f"| {cpu} | {len(boxes)} | {100 * np.mean(found_ref):.1f}% | {100 * np.mean(found):.1f}% | {diff:.2g} |")
    run_rows = []
    if runs:
        print("\n| CPU | daemon precision | frames | frames with a face | emotion agreement with the FP32 daemon here | "
              "largest probability difference |")
        print("|---|---|---|---|---|---|")
        base = runs["native", "fp32"]
        for (cpu, precision), probs in runs.items():
            pairs = [(p, q) for p, q in zip(probs, base) if p is not None and q is not None]
            agree = float(np.mean([p.argmax() == q.argmax() for p, q in pairs])) if pairs else float("nan")
            diff = max((float(np.abs(p - q).max()) for p, q in pairs), default=float("nan"))
            run_rows.append({"cpu": cpu, "precision": precision, "frames": len(probs),
                             "with_face": sum(p is not None for p in probs), "agreement": agree, "max_prob_diff": diff})
            print(f"| {cpu} | {precision} | {len(probs)} | {run_rows[-1]['with_face']} | {100 * agree:.1f}% | {diff:.4f} |")
    if a.json:
        a.json.write_text(json.dumps({"classifier": rows, "detector": det_rows, "daemon": run_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
