"""detect -> align -> one batched classify per frame, on real photos and a real clip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgefer.contract import CLASS_NAMES
from edgefer.edge.classifier import Classifier
from edgefer.edge.pipeline import Pipeline, build_pipeline
from edgefer.edge.sources import open_source
from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo, write_onnx_info

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads((ROOT / "train" / "alignment_template.json").read_text())["points"]


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


class CountingBackend:
    """A real backend, with its `infer` calls and batch sizes recorded."""

    def __init__(self, backend) -> None:
        self.inner = backend
        self.name, self.inputs, self.outputs = backend.name, backend.inputs, backend.outputs
        self.batches: list[int] = []

    def infer(self, feed):
        self.batches.append(len(next(iter(feed.values()))))
        return self.inner.infer(feed)

    def close(self) -> None:
        self.inner.close()


def collage(photos: list[Path], heights: list[int], size=(1280, 480)) -> np.ndarray:
    canvas = np.full((size[1], size[0], 3), 90, np.uint8)
    x = 10
    for path, h in zip(photos, heights):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        img = cv2.resize(img, (h * img.shape[1] // img.shape[0], h), interpolation=cv2.INTER_AREA)
        canvas[20:20 + h, x:x + img.shape[1]] = img
        x += img.shape[1] + 20
    return canvas


@pytest.fixture(scope="module")
def three_faces(photos_dir) -> np.ndarray:
    photos = [sorted((photos_dir / c).glob("*.jpg"))[0] for c in ("happy", "neutral", "surprise")]
    return collage(photos, [420, 300, 200])


def test_one_photo_end_to_end(pipeline, face_photo):
    result = pipeline.process_image(cv2.imread(str(face_photo), cv2.IMREAD_COLOR), source=str(face_photo))
    assert result.faces_detected == 1 and len(result.faces) == 1
    face = result.faces[0]
    assert face.probabilities.shape == (7,) and abs(float(face.probabilities.sum()) - 1) < 1e-4
    assert ((face.intensity >= 0) & (face.intensity <= 1)).all()
    assert set(result.timings_ms) == {"decode", "detect", "align", "classify", "total"}
    assert result.timings_ms["total"] >= result.timings_ms["detect"] > 0
    d = face.to_dict()
    assert list(d["probabilities"]) == list(CLASS_NAMES) and d["emotion"] in CLASS_NAMES


def test_all_faces_of_a_frame_go_in_one_batch_and_the_largest_are_kept(yunet_path, three_faces):
    clf = Classifier.open()
    counting = CountingBackend(clf.backend)
    clf.backend = counting
    p = build_pipeline(detector=yunet_path, threads=1, classifier=clf, max_faces=8)
    r = p.process_image(three_faces)
    assert r.faces_detected == 3 and len(r.faces) == 3 and counting.batches == [3]
    widths = [f.face.box[2] for f in r.faces]
    assert widths == sorted(widths, reverse=True)
    p.max_faces = 2
    r2 = p.process_image(three_faces)
    assert r2.faces_detected == 3 and len(r2.faces) == 2 and counting.batches[-1] == 2
    assert [iou(a.face.box, b.face.box) for a, b in zip(r2.faces, r.faces[:2])] == pytest.approx([1, 1])
    # a frame without faces does not call the classifier
    r3 = p.process_image(np.full((480, 640, 3), 90, np.uint8))
    assert r3.faces == [] and r3.faces_detected == 0 and len(counting.batches) == 2
    with pytest.raises(ConfigError):
        Pipeline(p.detector, clf, max_faces=0)


def nan_model(path: Path) -> Path:
    """A real ONNX classifier with the edgefer contract whose outputs are NaN for dark crops:
    logits = sqrt(0.45 + mean of the preprocessed input, which is in -1..1) per class."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 48, 48])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])
    intensity = helper.make_tensor_value_info("intensity", TensorProto.FLOAT, ["N", 7])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
    ones = helper.make_tensor("ones", TensorProto.FLOAT, [1, 7], [1.0] * 7)
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [0.45])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["m2"]),
        helper.make_node("Add", ["m2", "bias"], ["m3"]),
        helper.make_node("Sqrt", ["m3"], ["s"]),
        helper.make_node("Mul", ["s", "ones"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["intensity"]),
    ]
    graph = helper.make_graph(nodes, "nan_when_dark", [x], [logits, intensity], initializer=[shape, ones, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    write_onnx_info(model, ModelInfo(template=TEMPLATE, version="test-nan"))
    onnx.save(model, str(path))
    return path


def test_non_finite_outputs_are_dropped_and_counted(yunet_path, photos_dir, tmp_path):
    photos = [sorted((photos_dir / c).glob("*.jpg"))[0] for c in ("happy", "neutral")]
    frame = collage(photos, [300, 300], size=(800, 400))
    dark = frame.copy()
    dark[:, 330:] = (dark[:, 330:] * 0.3).astype(np.uint8)  # the second face becomes dark
    clf = Classifier.open(nan_model(tmp_path / "nan.onnx"))
    p = build_pipeline(detector=yunet_path, threads=1, classifier=clf)
    assert len(p.process_image(frame).faces) == 2 and p.non_finite == 0
    r = p.process_image(dark)
    assert r.faces_detected == 2 and len(r.faces) == 1 and p.non_finite == 1
    assert r.faces[0].face.box[0] < 330  # the bright face is the one kept
    assert all(np.isfinite(f.probabilities).all() for f in r.faces)


def test_moving_face_in_a_clip_is_found_in_every_frame(pipeline, face_clip):
    """The face's box follows the pasted photo: its first-frame box, moved by the paste offset."""
    path, where = face_clip
    src = open_source(str(path))
    n, first = 0, None
    try:
        while (frame := src.read()) is not None:
            r = pipeline.process(frame, decode_ms=src.decode_ms)
            assert len(r.faces) == 1, frame.index
            box = r.faces[0].face.box
            x, y, _ = where[frame.index]
            if first is None:
                first = box - [x, y, 0, 0]
            expected = first + [x, y, 0, 0]
            # detection on a half-size input jitters by a few pixels: boxes overlap well, centres agree
            assert iou(box, expected) > 0.7, frame.index
            centre_error = np.abs((box[:2] + box[2:] / 2) - (expected[:2] + expected[2:] / 2)).max()
            assert centre_error < 0.1 * expected[2], frame.index
            assert r.timings_ms["decode"] > 0
            n += 1
    finally:
        src.close()
    assert n == len(where)


def test_classifier_input_size_follows_the_model(pipeline):
    assert pipeline.aligner.size == pipeline.classifier.size == pipeline.classifier.info.input.size
    assert pipeline.classifier.backend.inputs[0].shape[1:] == (1, pipeline.aligner.size, pipeline.aligner.size)
