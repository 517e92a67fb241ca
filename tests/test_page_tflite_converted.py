"""AppTest of the TFLite explorer's converter samples: offered as a job while missing, listed
under their names once built (one long-lived session sees the list refresh)."""

from __future__ import annotations

import shutil

from engine.jobs import list_jobs
from engine.tflite.converted.build import MANIFEST, converted_root
from engine.tflite.converted.specs import SAMPLES
from tests.job_support import hold_local_jobs
from tests.page_support import open_page


def test_missing_samples_are_offered_as_a_job_then_listed(tmp_path, monkeypatch) -> None:
    hold_local_jobs(monkeypatch)
    monkeypatch.setenv("SUBNETSCOPE_CONVERTED_CACHE", str(tmp_path / "store"))
    at = open_page(monkeypatch, "tflite", cache=tmp_path / "cache", timeout=120)
    assert any("0 of 6 built" in c.value for c in at.caption)
    at.button(key="tflite_convert_job_submit").click().run()
    assert not at.exception, at.exception
    [job] = list_jobs()
    assert job.spec.kind == "tflite.convert_samples"

    # the job "writes" one sample (a copy of a synthetic model stands in for the converter's)
    spec = SAMPLES[2]
    folder = converted_root() / f"{spec.name}-{spec.key}"
    folder.mkdir(parents=True)
    shutil.copy(tmp_path / "cache" / "tflite-samples" / "mlp.tflite", folder / "model.tflite")
    (folder / MANIFEST).write_text('{"seconds": 1.0}')
    at.run()
    files = next(s for s in at.selectbox if s.label == "File")
    # listed at once (not after the list's TTL), under the sample's name
    assert f"model.tflite  (converted: {spec.name})" in files.options
    assert any("1 of 6 built" in c.value for c in at.caption)
