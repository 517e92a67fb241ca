"""Convert one Hugging Face model folder with Google's converter (litert-torch's `export_hf`).

Runs in the converter's own environment (`scripts/setup_converter.sh` makes `.venv-converter`),
never in the app's: litert-torch pulls in JAX and its own pins. Usage:

    .venv-converter/bin/python scripts/convert_hf.py HF_FOLDER OUT '{"quantization_recipe": "none"}'

Writes OUT/model.tflite (the prefill/decode graph) and OUT/model.litertlm (the same graph
bundled with the tokenizer and metadata), and OUT/converter.json (the converter's version and
the options passed to it).

Some converter modules import `tensorflow.lite.python.schema_py_generated`, which only TensorFlow
ships; `ai_edge_litert` ships the same generated schema module, so it stands in (a module entry,
no TensorFlow install). `export_hf` imports every model extension when it starts.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import json
import shutil
import sys
import time
import types
from pathlib import Path


def _schema_shim() -> None:
    import ai_edge_litert.schema_py_generated as schema

    for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python"):
        module = types.ModuleType(name)
        module.__path__ = []
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        sys.modules.setdefault(name, module)
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema


def main(source: str, out: str, options: str = "{}") -> None:
    _schema_shim()
    from litert_torch.generative.export_hf import export as export_hf

    target = Path(out)
    work = target / "work"
    shutil.rmtree(work, ignore_errors=True)
    kwargs = json.loads(options)
    started = time.monotonic()
    export_hf.export(model=source, output_dir=str(work), keep_temporary_files=True, **kwargs)
    graphs = sorted(work.glob("*.tflite"), key=lambda p: ("quantized" not in p.name, p.name))
    bundles = sorted(work.glob("*.litertlm"))
    if not graphs or not bundles:
        raise SystemExit(f"the converter wrote no .tflite or .litertlm under {work}")
    shutil.move(graphs[0], target / "model.tflite")  # the quantized graph when there is one
    shutil.move(bundles[0], target / "model.litertlm")
    shutil.rmtree(work)
    record = {
        "converter": "litert-torch",
        "version": importlib.metadata.version("litert-torch"),
        "options": kwargs,
        "seconds": round(time.monotonic() - started, 1),
    }
    (target / "converter.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
