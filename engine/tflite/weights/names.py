"""Read the Hugging Face module paths that Google's converter writes into TFLite tensor names.

litert-torch names a tensor after the torch modules that made it, e.g.
`...LiteRTExportableModuleForDecoderOnlyLMPrefill/transformers...Qwen2ForCausalLM_model/
transformers...Qwen2Model_model/...Qwen2DecoderLayer_0/...Qwen2Attention_self_attn/
torch.nn.modules.linear.Linear_q_proj`. Each `/` part is `<dotted class>_<attribute>`; the
first part is the exportable wrapper (no attribute), the second the wrapper's attribute that holds
the HF model, so the HF path is the attributes from the third part on (`model`, `0`,
`self_attn`, `q_proj`). Module lists drop their own name (`layers`), so a path is matched as a
subsequence of a parameter's module path. When the converter fuses ops it joins their locations
with `;`: each location gives a candidate, and shapes and values decide between them.
"""

from __future__ import annotations

from collections.abc import Iterable


def module_paths(tensor_name: str) -> list[tuple[str, ...]]:
    """The HF attribute paths named by each `;` location of a tensor name (empty ones dropped)."""
    paths = []
    for location in tensor_name.split(";"):
        if "/" not in location:
            continue  # "arith.constant12", or a ";1" suffix: no module named
        attrs = []
        for part in location.split("/"):
            leaf = part.rsplit(".", 1)[-1]
            if "_" in leaf:
                attrs.append(leaf.split("_", 1)[1])
            elif attrs:
                break  # a part without an attribute past the root: not a module path
        path = tuple(attrs[1:])  # attrs[0] is the wrapper's hold on the HF model
        if path and path not in paths:
            paths.append(path)
    return paths


def _is_subsequence(short: tuple[str, ...], long: list[str]) -> bool:
    it = iter(long)
    return all(any(item == x for x in it) for item in short)


def named_candidates(tensor_name: str, params: Iterable[str]) -> list[str]:
    """HF parameters whose module the name points at: the path's last attribute is the module's
    own name and the whole path is a subsequence of the module path."""
    paths = module_paths(tensor_name)
    if not paths:
        return []
    out = []
    for param in params:
        module = param.split(".")[:-1]
        if not module:
            continue
        if any(p[-1] == module[-1] and _is_subsequence(p, module) for p in paths):
            out.append(param)
    return out
