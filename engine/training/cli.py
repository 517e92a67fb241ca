"""`python -m engine train sft|grpo|ppo|lora|relora|rank1|full --config FILE.yaml`: submit a run.

`train sft` with ICA masking options (flags, or masking keys in the YAML) runs seed 001's masked
LoRA SFT (`train.sft_masked`); `--three-way` submits its LoRA / lesion / preserve comparison.
`lora` trains a task adapter, `relora` runs ReLoRA, `rank1` dynamic rank-1 merging, `full` full
fine-tuning on the same data (the baseline of the three).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MASK_FLAGS = (
    "mask_mode",
    "ica_templates",
    "ica_component_ids",
    "ica_space",
    "anti_drift_row_param",
    "anti_drift_apply_to",
)


def read_config(method: str, path: str | Path) -> dict:
    """The YAML file's keys, checked against the method's config dataclass (one-line errors)."""
    import yaml

    from engine.errors import SubnetScopeError
    from engine.training.config import CONFIGS

    path = Path(path)
    if not path.is_file():
        raise SubnetScopeError(f"no config file at '{path}'")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise SubnetScopeError(f"{path} is not valid YAML: {first}") from None
    if not isinstance(params, dict):
        raise SubnetScopeError(f"{path} must hold a mapping of option: value")
    CONFIGS[method].from_params(params, what=str(path))  # validates keys and values
    return params


def _masked(args: argparse.Namespace, path: str | None) -> bool:
    if args.method != "sft":
        return False
    if args.three_way or any(getattr(args, flag) is not None for flag in MASK_FLAGS):
        return True
    if path:
        import yaml

        from engine.training.config import MaskedSFTConfig, SFTRunConfig

        try:
            keys = set(yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError):
            return False  # read_config reports it
        only_masked = set(MaskedSFTConfig.__dataclass_fields__) - set(
            SFTRunConfig.__dataclass_fields__
        )
        return bool(keys & only_masked)
    return False


def _train(args: argparse.Namespace) -> int:
    import time

    from engine.errors import SubnetScopeError
    from engine.jobs.cli import _submit
    from engine.training.config import MaskedSFTConfig, three_way

    if args.method != "sft" and (
        args.three_way or any(getattr(args, flag) is not None for flag in MASK_FLAGS)
    ):
        raise SubnetScopeError("the ICA masking options and --three-way apply to `train sft` only")
    method = "sft_masked" if _masked(args, args.config) else args.method
    params = read_config(method, args.config) if args.config else {}
    for flag in MASK_FLAGS:
        if getattr(args, flag) is not None:
            params[flag] = getattr(args, flag)
    if method == "sft_masked":
        MaskedSFTConfig.from_params(params, what="options")  # one-line errors before submitting
    runs = [params]
    if args.three_way:
        runs = three_way(params, group=args.group or time.strftime("cmp-%Y%m%d-%H%M%S"))
    code = 0
    for run in runs:
        # The jobs CLI's submit does the rest (resources, --wait progress, exit codes).
        args.kind, args.params, args.partition = f"train.{method}", json.dumps(run), None
        code = max(code, _submit(args))
    return code


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train")
    train.add_argument("method", choices=("sft", "grpo", "ppo", "lora", "relora", "rank1", "full"))
    train.add_argument("--config", help="YAML file of options (see `jobs kinds` for defaults)")
    masked = train.add_argument_group("ICA-masked SFT (seed 001; sft only)")
    masked.add_argument("--mask-mode", choices=("lesion", "preserve"))
    masked.add_argument("--ica-templates", help="templates .json, or 'demo'")
    masked.add_argument("--ica-component-ids", help="components to mask, e.g. 0,1")
    masked.add_argument(
        "--ica-space",
        choices=("mlp_neurons", "mlp_out"),
        help="the neuron space the templates must be in (default: the file's own)",
    )
    masked.add_argument(
        "--anti-drift-row-param",
        action="store_const",
        const=True,
        help="hold masked neurons' weights exactly: W = frozen + row_mask * delta",
    )
    masked.add_argument("--anti-drift-apply-to", choices=("auto", "lora", "base", "both"))
    masked.add_argument(
        "--three-way",
        action="store_true",
        help="submit LoRA only, LoRA + ICA lesion and LoRA + ICA preserve as three runs",
    )
    masked.add_argument("--group", help="label of the three-way comparison")
    train.add_argument("--backend", choices=("local", "slurm"), default="local")
    train.add_argument("--wait", action="store_true", help="show progress until the run ends")
    train.add_argument("--cpus", type=int, default=2)
    train.add_argument("--gpus", type=int, default=0)
    train.add_argument("--mem-gb", type=float, default=16.0)
    train.add_argument("--time-min", type=int, default=120)
    train.set_defaults(handler=_train)
