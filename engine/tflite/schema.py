"""Name tables over the TFLite schema: tensor types, operators, options classes, option enums."""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

import numpy as np
import tflite

# Newer schema entries than the `tflite` package (2.18) knows; names follow LiteRT's schema.fbs.
_EXTRA_TENSOR_TYPES = {19: "INT2", 20: "UINT4", 21: "FLOAT8_E4M3FN", 22: "FLOAT8_E5M2"}
_EXTRA_OPERATORS = {209: "STABLEHLO_CASE"}


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


TENSOR_TYPES: dict[int, str] = {
    k: v.lower() for k, v in (_enum_names(tflite.TensorType) | _EXTRA_TENSOR_TYPES).items()
}
TENSOR_TYPE_CODES: dict[str, int] = {v: k for k, v in TENSOR_TYPES.items()}
OPERATORS: dict[int, str] = _enum_names(tflite.BuiltinOperator) | _EXTRA_OPERATORS
OPERATOR_CODES: dict[str, int] = {v: k for k, v in OPERATORS.items()}
CUSTOM = OPERATOR_CODES["CUSTOM"]
# `deprecated_builtin_code` is an int8: codes above 127 store this placeholder there (schema.fbs).
PLACEHOLDER_FOR_GREATER_OP_CODES = 127

# Bits per stored element; types packed below one byte are stored low bits first.
ELEMENT_BITS: dict[str, int] = {
    "float32": 32,
    "float16": 16,
    "bfloat16": 16,
    "float64": 64,
    "int32": 32,
    "uint32": 32,
    "int64": 64,
    "uint64": 64,
    "int16": 16,
    "uint16": 16,
    "int8": 8,
    "uint8": 8,
    "bool": 8,
    "complex64": 64,
    "complex128": 128,
    "int4": 4,
    "uint4": 4,
    "int2": 2,
    "float8_e4m3fn": 8,
    "float8_e5m2": 8,
}
# Little-endian numpy dtypes of the types numpy can hold as they are stored.
NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "float32": "<f4",
        "float16": "<f2",
        "float64": "<f8",
        "int32": "<i4",
        "uint32": "<u4",
        "int64": "<i8",
        "uint64": "<u8",
        "int16": "<i2",
        "uint16": "<u2",
        "int8": "i1",
        "uint8": "u1",
        "bool": "?",
        "complex64": "<c8",
        "complex128": "<c16",
    }.items()
}


def stored_bytes(dtype: str, numel: int) -> int | None:
    """Bytes a dense constant of `numel` elements takes, or None for variable-size types."""
    bits = ELEMENT_BITS.get(dtype)
    if bits is None:
        return None
    return (numel * bits + 7) // 8


def operator_name(deprecated_code: int, code: int) -> str:
    # schema.fbs: the real code is max(deprecated_builtin_code, builtin_code).
    n = max(deprecated_code, code)
    return OPERATORS.get(n, f"UNKNOWN_OPERATOR_{n}")


# Options fields that hold schema enums, by accessor name: decoded to the enum's names.
_OPTION_ENUMS: dict[str, type] = {
    "FusedActivationFunction": tflite.ActivationFunctionType,
    "Padding": tflite.Padding,
    "WeightsFormat": tflite.FullyConnectedOptionsWeightsFormat,
    "KernelType": tflite.LSTMKernelType,
    "Combiner": tflite.CombinerType,
    "Mode": tflite.MirrorPadMode,
    "Type": tflite.LSHProjectionType,
    "InDataType": tflite.TensorType,
    "OutDataType": tflite.TensorType,
    "OutputType": tflite.TensorType,
    "OutType": tflite.TensorType,
    "IdxOutType": tflite.TensorType,
    "KeyDtype": tflite.TensorType,
    "ValueDtype": tflite.TensorType,
    "QuantizedBiasType": tflite.TensorType,
    "CompareType": tflite.StablehloComparisonType,
    "ComparisonDirection": tflite.StablehloComparisonDirection,
}
OPTION_ENUM_NAMES = {key: _enum_names(cls) for key, cls in _OPTION_ENUMS.items()}
OPTION_ENUM_CODES = {
    key: {v: k for k, v in names.items()} for key, names in OPTION_ENUM_NAMES.items()
}

BUILTIN_OPTIONS: dict[int, str] = _enum_names(tflite.BuiltinOptions)
BUILTIN_OPTIONS_2: dict[int, str] = _enum_names(tflite.BuiltinOptions2)
_OPTIONS_BY_KEY = {name.lower(): name for name in BUILTIN_OPTIONS.values()}
# Operators whose options class is not simply "<OperatorName>Options".
_SHARED_OPTIONS = {
    **dict.fromkeys(
        ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"),
        "ReducerOptions",
    ),
    **dict.fromkeys(("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"), "Pool2DOptions"),
    "LSTM": "LSTMOptions",
    "RELU_N1_TO_1": "",
}


def options_class_for(opcode: str) -> str | None:
    """The BuiltinOptions member an operator is written with (None when it has none)."""
    if opcode in _SHARED_OPTIONS:
        return _SHARED_OPTIONS[opcode] or None
    return _OPTIONS_BY_KEY.get(opcode.replace("_", "").lower() + "options")


@functools.cache  # called for every option field of every operator: the names are few
def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@functools.cache
def option_accessors(cls: type) -> tuple[tuple[str, bool], ...]:
    """(accessor name, is_vector) for each field of a generated options class."""
    skip = ("GetRootAs", "Init")
    fields = []
    for attr, fn in vars(cls).items():
        if attr.startswith(skip) or attr.startswith("_") or not callable(fn):
            continue
        if attr.endswith(("BufferHasIdentifier", "AsNumpy", "Length", "IsNone")):
            continue
        params = len(inspect.signature(fn).parameters)
        if params == 1:
            fields.append((attr, False))
        elif params == 2 and f"{attr}AsNumpy" in vars(cls):
            fields.append((attr, True))
    return tuple(fields)


def decode_option(accessor: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    names = OPTION_ENUM_NAMES.get(accessor)
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, value)
    if isinstance(value, (bool, int, float, str)):
        return value
    return None  # nested tables are left out
