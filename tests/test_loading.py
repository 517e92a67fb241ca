"""Model sources: local folders, GGUF, hub ids offline, clear errors; device choice."""

from __future__ import annotations

import pytest
import torch

from engine.errors import SubnetScopeError
from engine.models import choose_device, load_model
from engine.models.catalog import list_local_models
from engine.models.loading import resolve_source


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory, tiny_models):
    folder = tmp_path_factory.mktemp("models") / "tiny-qwen2"
    loaded = tiny_models["qwen2"]
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def test_local_folder_loads_read_only_with_safetensors(saved_folder, tiny_models) -> None:
    loaded = load_model(str(saved_folder))
    assert loaded.architecture.family == "Qwen2"
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert list(saved_folder.glob("*.safetensors")) and not list(saved_folder.glob("*.bin"))
    reference = tiny_models["qwen2"].model.state_dict()
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, reference[name])


def test_trainable_load_for_jobs(saved_folder) -> None:
    loaded = load_model(str(saved_folder), inference=False)
    assert all(p.requires_grad for p in loaded.model.parameters())


def test_missing_path_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(SubnetScopeError, match="no such file or folder"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(SubnetScopeError, match="without config.json"):
        load_model(str(tmp_path))


def test_hub_id_offline_names_the_source(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        SubnetScopeError, match="cannot load 'someone/some-model'.*HF_HUB_OFFLINE=1"
    ):
        load_model("someone/some-model")


def test_source_classification(tmp_path) -> None:
    assert resolve_source("org/model").kind == "hub"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    resolved = resolve_source(str(gguf))
    assert (resolved.kind, resolved.gguf_file) == ("gguf", "m.gguf")
    assert resolve_source(str(tmp_path)).gguf_file == "m.gguf"  # a folder with one .gguf
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(SubnetScopeError, match="not a .gguf"):
        resolve_source(str(other))


def test_device_choice_follows_cuda_mps_cpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device() == (torch.device("cpu"), torch.float32)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device() == (torch.device("mps"), torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_device() == (torch.device("cuda"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_device() == (torch.device("cuda"), torch.float32)


def test_catalog_lists_demo_first_and_local_models(saved_folder) -> None:
    choices = list_local_models([saved_folder.parent])
    assert choices[0].source == "demo"
    assert str(saved_folder) in [c.source for c in choices]


def test_unreachable_hub_fails_fast_without_retries(monkeypatch) -> None:
    import engine.models.loading as loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    with pytest.raises(SubnetScopeError, match="hub is unreachable and it is not in the local"):
        load_model("someone/other-model")
