"""`python -m engine tflite samples`: list (and `--build`) the converter-made samples."""

from __future__ import annotations

import argparse

from engine.console import print_json, progress_printer


def _samples(args: argparse.Namespace) -> int:
    from engine.tflite.converted.build import build_samples, built_samples, sample_dir
    from engine.tflite.converted.specs import CONVERTER, CONVERTER_VERSION, SAMPLES

    if args.build:
        build_samples(args.names or None, force=args.force, progress=progress_printer(args.json))
    built = {s.spec.name: s for s in built_samples()}
    rows = [
        {
            "name": spec.name,
            "title": spec.title,
            "family": spec.family,
            "quantization": spec.quantization,
            "built": spec.name in built,
            "folder": str(sample_dir(spec)),
            "seconds": built[spec.name].manifest["seconds"] if spec.name in built else None,
        }
        for spec in SAMPLES
    ]
    if args.json:
        print_json({"converter": f"{CONVERTER} {CONVERTER_VERSION}", "samples": rows})
        return 0
    print(f"converter-made samples ({CONVERTER} {CONVERTER_VERSION}):")
    for row in rows:
        state = f"built in {row['seconds']:.0f} s" if row["built"] else "not built"
        print(f"  {row['name']:<20} {state:<16} {row['title']}")
        if row["built"]:
            print(f"  {'':<20} {row['folder']}")
    if not all(row["built"] for row in rows):
        print("build them with: python -m engine tflite samples --build")
    return 0


def register_samples(sub: argparse._SubParsersAction) -> None:
    samples = sub.add_parser(
        "samples", help="the samples Google's converter made from Hugging Face models"
    )
    samples.add_argument(
        "--build",
        action="store_true",
        help="convert the samples not built yet (needs scripts/setup_converter.sh)",
    )
    samples.add_argument("--names", nargs="+", help="only these samples")
    samples.add_argument("--force", action="store_true", help="rebuild even if built")
    samples.add_argument("--json", action="store_true", help="print JSON")
    samples.set_defaults(handler=_samples)
