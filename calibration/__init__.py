"""Calibration sets for INT8 conversion: build (`build`), store and verify (`dataset`), feed ONNX
Runtime's quantiser (`reader`)."""
