"""`python -m engine demo ...`: prepare the demo model, build the offline demo, show its state."""

from __future__ import annotations

import argparse

from engine.console import print_json


def _prepare(args: argparse.Namespace) -> int:
    from engine.models.demo import ensure_demo_model

    print(ensure_demo_model())
    return 0


def _path(args: argparse.Namespace) -> int:
    from engine.models.demo import demo_model_dir

    print(demo_model_dir())
    return 0


def _status(args: argparse.Namespace) -> int:
    from engine.demo.parts import demo_status

    states = [s.summary() for s in demo_status()]
    if args.json:
        print_json(states)
        return 0
    for s in states:
        progress = f" {s['fraction']:.0%}" if s["state"] == "building" else ""
        job = f"  job {s['job_id']}" if s["job_id"] else ""
        print(f"{s['part']:<22} {s['state']:<9}{progress:<5} {s['title']}{job}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from engine.demo.parts import build_demo
    from engine.jobs import wait_job

    submitted = build_demo(args.only, backend=args.backend)
    if not submitted:
        print("nothing to build: every part is ready or being built")
    for view in submitted:
        print(f"{view.id}  {view.spec.kind}")
    if args.wait:
        ends = [wait_job(v.id) for v in submitted]
        failed = [v for v in ends if v.status.state != "succeeded"]
        for v in failed:
            print(f"{v.id} {v.status.state}: {v.status.message}")
        return 1 if failed else 0
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo")
    sub = demo.add_subparsers(dest="command", metavar="COMMAND", required=True)
    prepare = sub.add_parser("prepare", help="convert the demo model (SmolLM2) once, in process")
    prepare.set_defaults(handler=_prepare)
    path = sub.add_parser("path", help="print where the demo model lives")
    path.set_defaults(handler=_path)
    status = sub.add_parser("status", help="which demo parts are ready, building or missing")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    build = sub.add_parser("build", help="submit jobs for the missing demo parts")
    build.add_argument("--only", help="build just this part (see `demo status`)")
    build.add_argument("--backend", choices=("local", "slurm"), default="local")
    build.add_argument("--wait", action="store_true", help="wait until the jobs end")
    build.set_defaults(handler=_build)
