"""Where a converted file's weights came from: the HF folder of a known converter sample."""

from __future__ import annotations

from pathlib import Path


def converted_source(path: str | Path) -> Path | None:
    """The source HF folder when `path` is a built converter sample's model.tflite or
    model.litertlm; None for any other file."""
    from engine.tflite.converted.build import built_samples

    target = Path(path).resolve()
    for sample in built_samples():
        if target in (sample.tflite.resolve(), sample.litertlm.resolve()):
            return sample.hf_folder()
    return None
