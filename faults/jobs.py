"""Faults of the job system: kill -9, jobs stuck before they start, damaged files, a full disk,
two dashboards on one cache, a burst of real jobs on the demo model, hostile ids and options."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from faults.table import Row, scenario

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")


@contextmanager
def cache_at(root: Path, **env: str) -> Iterator[Path]:
    """Point the engine (this process and the jobs it starts) at `root`; restore afterwards."""
    names = {"SUBNETSCOPE_CACHE": str(root), **env}
    old = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield root
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def engine_env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SUBNETSCOPE_CACHE": str(root), "OMP_NUM_THREADS": "1", **extra}


def until(predicate: Callable[[], object], timeout: float, poll: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return None


def link_demo_model(cache: Path) -> None:
    """Share the checkout's converted demo model instead of converting it again (30 s)."""
    real = ROOT / "cache" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    if real.is_dir() and not (cache / "models").exists():
        (cache / "models").symlink_to(real, target_is_directory=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- kill -9, seen by another process after a restart ---------------------------------------
@scenario("jobs-kill")
def kill_nine(scratch: Path) -> list[Row]:
    cache = scratch / "cache"
    env = engine_env(cache, SUBNETSCOPE_MAX_JOBS="1")
    code = (
        "from engine.jobs import submit\n"
        "print(submit('diagnostics.sleep', {'seconds': 120, 'steps': 240}).id)\n"
        "print(submit('diagnostics.sleep', {'seconds': 0.2, 'steps': 1}).id)\n"
    )
    # The "dashboard" submits two jobs and exits: the queue and the jobs outlive it.
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    victim, behind = out
    status = cache / "jobs" / victim / "status.json"
    until(lambda: json.loads(status.read_text())["state"] == "running", 60)
    pid = json.loads(status.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def listed() -> dict | None:
        command = [sys.executable, "-m", "engine", "jobs", "list", "--json"]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        rows = {r["id"]: r for r in json.loads(done.stdout)}
        return rows if rows[victim]["state"] == "failed" else None

    rows = until(listed, 60, poll=0.5) or {}
    seen_s = time.monotonic() - killed
    after = until(
        lambda: (
            json.loads((cache / "jobs" / behind / "status.json").read_text())["state"]
            == "succeeded"
        ),
        60,
    )
    message = rows.get(victim, {}).get("message", "not seen")
    return [
        Row(
            "jobs",
            "kill -9 of a running local job; its submitting process already gone (a dashboard "
            "restart); a fresh process looks",
            f"the fresh process lists it failed: '{message}'; the job queued behind it then ran "
            + ("to success" if after else "— it did NOT run"),
            f"failed state seen {seen_s:.1f} s after the kill (one CLI start ≈ 3 s)",
            ok=bool(rows) and "process died" in message and bool(after),
        )
    ]


# --- jobs stuck between create and start ----------------------------------------------------
def _plant(cache: Path, job_id: str, spec: dict | None, status: bytes | None, age_s: float = 0):
    folder = cache / "jobs" / job_id
    (folder / "result").mkdir(parents=True)
    (folder / "log.txt").touch()
    (folder / "events.jsonl").touch()
    if status is not None:
        (folder / "status.json").write_bytes(status)
    if spec is not None:
        (folder / "spec.json").write_text(json.dumps({"id": job_id, **spec}))
        if age_s:
            stamp = time.time() - age_s
            os.utime(folder / "spec.json", (stamp, stamp))
    return folder


def _spec(kind: str = "diagnostics.sleep", **params) -> dict:
    return {
        "kind": kind,
        "params": {"seconds": 0.2, "steps": 1, **params},
        "backend": "local",
        "resources": {"cpus": 1, "gpus": 0, "mem_gb": 0.3, "time_min": 60, "partition": None},
        "engine_version": "faults",
        "created": "2026-01-01T00:00:00+00:00",
    }


@scenario("jobs-stuck")
def stuck(scratch: Path) -> list[Row]:
    from engine.jobs import JobStore, list_jobs, wait_job

    cache = scratch / "cache"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    dead_pid = gone.pid
    cases = {
        "20260101-000000-000001-no-status": (_spec(), None, "status.json is missing"),
        "20260101-000000-000002-empty-status": (_spec(), b"", "status.json is empty"),
        "20260101-000000-000003-a-pid-that-died-before-running": (
            _spec(),
            json.dumps({"state": "queued", "pid": dead_pid, "message": "starting"}).encode(),
            "process died",
        ),
    }
    with cache_at(cache, SUBNETSCOPE_MAX_JOBS="2"):
        JobStore()
        for job_id, (spec, status, _) in cases.items():
            _plant(cache, job_id, spec, status, age_s=60)
        orphan = "20260101-000000-000004-never-launched"
        _plant(cache, orphan, _spec(), json.dumps({"state": "queued"}).encode(), age_s=60)
        started = time.monotonic()
        views = {v.id: v for v in list_jobs()}
        look_s = time.monotonic() - started
        rows = []
        for job_id, (_, _, expected) in cases.items():
            s = views[job_id].status
            rows.append(
                Row(
                    "jobs",
                    f"a job folder left with {job_id.split('-', 3)[-1].replace('-', ' ')} "
                    "(its spec a minute old)",
                    f"the next look marks it {s.state}: '{s.message}'",
                    f"one look {look_s * 1000:.0f} ms",
                    ok=s.state == "failed" and expected in s.message,
                )
            )
        done = wait_job(orphan, timeout=60)
        rows.append(
            Row(
                "jobs",
                "a queued job whose submitter died before the queue started it",
                f"the queue starts it on the next look; it ends {done.status.state}",
                f"{done.elapsed() or 0:.1f} s run",
                ok=done.status.state == "succeeded",
            )
        )
    return rows


# --- damaged spec / status / events files ---------------------------------------------------
DAMAGE = {
    "spec with an unknown key": ({**_spec(), "surprise": 1}, b'{"state": "running"}'),
    "spec that is not UTF-8": (None, b'{"state": "queued"}'),
    "spec that is a JSON list": ([], b'{"state": "queued"}'),
    "spec with params that are a string": ({**_spec(), "params": "x"}, b'{"state": "queued"}'),
    "status that is not UTF-8": (_spec(), b"\xff\xfe\x00garbage"),
    "status with an unknown state": (_spec(), b'{"state": "exploded"}'),
    "status whose fraction is text": (_spec(), b'{"state": "running", "fraction": "half"}'),
}


@scenario("jobs-damaged")
def damaged(scratch: Path) -> list[Row]:
    from streamlit.testing.v1 import AppTest

    from engine.jobs import job_events, list_jobs, submit, wait_job
    from engine.jobs.finished import finished_results

    cache = scratch / "cache"
    rows = []
    with cache_at(cache):
        good = wait_job(submit("diagnostics.sleep", {"seconds": 0.2, "steps": 2}).id, timeout=60)
        (good.path / "events.jsonl").open("ab").write(b"\x00\xff{half a line\n[1, 2]\n")
        for n, (spec, status) in enumerate(DAMAGE.values()):
            job_id = f"20260101-000000-{n:06d}-damaged"
            folder = _plant(cache, job_id, None, status, age_s=0)
            if spec is None:
                (folder / "spec.json").write_bytes(b'{"id": "\xff\xfe"}')
            else:
                body = {"id": job_id, **spec} if isinstance(spec, dict) else spec
                (folder / "spec.json").write_text(json.dumps(body))
            stamp = time.time() - 60
            os.utime(folder / "spec.json", (stamp, stamp))
        views = {v.id: v for v in list_jobs()}
        for n, name in enumerate(DAMAGE):
            view = views.get(f"20260101-000000-{n:06d}-damaged")
            shown = view.status.message if view else "missing from the list"
            rows.append(
                Row(
                    "jobs",
                    f"a job folder with a {name}",
                    f"its own row, failed: '{shown[:90]}'",
                    ok=view is not None and view.status.state == "failed",
                )
            )
        events = job_events(views[good.id])
        results = finished_results("diagnostics.sleep", "sleep.json", {})
        at = AppTest.from_file(APP, default_timeout=120).switch_page("../pages/runs.py").run()
        table = at.dataframe[0].value if at.dataframe else None
        rows.append(
            Row(
                "jobs",
                "the healthy job beside them (its events.jsonl with a binary and a half line)",
                f"listed {views[good.id].status.state}; {len(events)} events read (damage "
                f"skipped); finished-results list has it; the Runs page shows "
                f"{0 if table is None else len(table)} rows, no exception",
                ok=views[good.id].status.state == "succeeded"
                and [r.view.id for r in results] == [good.id]
                and not at.exception
                and table is not None
                and len(table) == len(DAMAGE) + 1,
            )
        )
    return rows


# --- a full disk ----------------------------------------------------------------------------
@contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[bool]:
    folder.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@scenario("jobs-disk-full")
def disk_full(scratch: Path) -> list[Row]:
    from engine.errors import SubnetScopeError
    from engine.jobs import get_job, list_jobs, submit, wait_job
    from engine.jobs.context import JobContext

    with small_disk(scratch / "disk") as mounted:
        if not mounted:
            return [
                Row(
                    "jobs",
                    "a full disk (tmpfs of 4 MB)",
                    "not run: mounting a tmpfs needs root",
                    ok=True,
                )
            ]
        cache = scratch / "disk" / "cache"
        rows = []
        with cache_at(cache, SUBNETSCOPE_MAX_JOBS="1"):
            first = submit("diagnostics.sleep", {"seconds": 0.1, "steps": 1})
            saved = wait_job(first.id, timeout=60)
            result = saved.path / "result" / "sleep.json"
            before = {p.name: sha(p) for p in saved.path.rglob("*.json")}
            running = submit("diagnostics.sleep", {"seconds": 4, "steps": 4})
            until(lambda: get_job(running.id).status.state == "running", 30)
            filler = fill(scratch / "disk")
            try:
                submit("diagnostics.sleep")
                refused = "accepted (!)"
            except SubnetScopeError as exc:
                refused = str(exc)
            leftovers = [
                p.name for p in (cache / "jobs").iterdir() if p.is_dir()
            ]  # only the two real jobs
            ctx = JobContext(saved.path, lambda **kw: None)
            try:
                ctx.write_json("sleep.json", {"big": "x" * 8_000_000})
                overwrite = "written (!)"
            except OSError as exc:
                overwrite = f"refused ({exc.strerror})"
            temp_left = [p.name for p in result.parent.iterdir() if p.name.endswith(".tmp")]
            end = until(lambda: get_job(running.id).status.is_final, 60)
            seen = get_job(running.id).status
            listed = len(list_jobs())
            after = {p.name: sha(p) for p in saved.path.rglob("*.json")}
            filler.unlink()
            healed = until(lambda: get_job(running.id).status.message.find("not saved") < 0, 30)
        rows.append(
            Row(
                "jobs",
                "submit when the cache's disk is full",
                f"one sentence: '{refused[:110]}'; no half folder left",
                ok="No space left" in refused and len(leftovers) == 2,
            )
        )
        rows.append(
            Row(
                "jobs",
                "overwrite a finished job's result on the full disk",
                f"{overwrite}; no temp file left; every saved JSON byte-identical",
                ok="refused" in overwrite and not temp_left and before == after,
            )
        )
        rows.append(
            Row(
                "jobs",
                "a job running when the disk fills",
                f"the next look shows it {seen.state}: '{seen.message[:90]}'; {listed} jobs "
                f"still listed; written to its folder once space is back: {bool(healed)}",
                ok=bool(end) and seen.state == "failed" and bool(healed),
            )
        )
        return rows


# --- two dashboards on one cache: each demo part once, the queue holds ------------------------
@scenario("jobs-two-dashboards")
def two_dashboards(scratch: Path) -> list[Row]:
    from engine.demo import load_parts
    from engine.jobs import cancel_job, list_jobs

    cache = scratch / "cache"
    link_demo_model(cache)
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=300).run()\n"
        "assert not at.exception, at.exception\n"
    )
    env = engine_env(cache, SUBNETSCOPE_AUTO_DEMO="1", SUBNETSCOPE_MAX_JOBS="1")
    started = time.monotonic()
    dashboards = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env) for _ in range(2)
    ]
    peak_running = 0
    while any(d.poll() is None for d in dashboards) and time.monotonic() - started < 300:
        peak_running = max(peak_running, _running_jobs(cache))
        time.sleep(0.2)
    codes = [d.wait(timeout=60) for d in dashboards]
    for _ in range(10):
        peak_running = max(peak_running, _running_jobs(cache))
        time.sleep(0.2)
    with cache_at(cache):
        parts = load_parts()
        views = list_jobs()
        per_part = {
            name: sum(
                v.spec.kind == part.job_kind
                and all(v.spec.params.get(k) == x for k, x in part.params.items())
                for v in views
            )
            for name, part in parts.items()
            if part.is_ready is None or not part.is_ready()
        }
        for view in views:
            if not view.status.is_final:
                cancel_job(view.id, wait=True)
    return [
        Row(
            "jobs",
            "two dashboards start at once on one fresh cache (each runs the app, which submits "
            "the missing demo parts)",
            f"{len(views)} jobs for {len(per_part)} missing parts, "
            f"{max(per_part.values(), default=0)} at most per part; at most {peak_running} "
            "running at once with 1 slot",
            f"both dashboards up in {time.monotonic() - started:.0f} s",
            ok=codes == [0, 0]
            and all(n == 1 for n in per_part.values())
            and len(views) == len(per_part)
            and peak_running <= 1,
        )
    ]


def _running_jobs(cache: Path) -> int:
    count = 0
    for status in (cache / "jobs").glob("*/status.json"):
        try:
            data = json.loads(status.read_text())
        except (OSError, ValueError):
            continue
        if data.get("pid") and data.get("state") in ("queued", "running"):
            count += _alive(data["pid"])
    return count


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return 0.0


# --- 20 jobs at once on the demo model --------------------------------------------------------
@scenario("jobs-burst")
def burst(scratch: Path) -> list[Row]:
    from engine.jobs import JobStore, list_jobs, submit
    from engine.jobs.queue import queue_state

    cache = scratch / "cache"
    link_demo_model(cache)
    slots, budget = 2, 4.0
    with cache_at(cache, SUBNETSCOPE_MAX_JOBS=str(slots), SUBNETSCOPE_JOB_MEMORY_GB=str(budget)):
        started = time.monotonic()
        views = [
            submit("eval.perplexity", {"max_tokens": 96, "window": 64, "stride": 32})
            for _ in range(20)
        ]
        submit_s = time.monotonic() - started
        peak_running, peak_rss, waiting_seen = 0, 0.0, 0
        paths = [v.path / "status.json" for v in views]
        while time.monotonic() - started < 600:
            states, pids = [], []
            for path in paths:
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                states.append(data["state"])
                if data.get("pid") and data["state"] in ("queued", "running"):
                    pids.append(data["pid"])
            alive = [p for p in pids if _alive(p)]
            peak_running = max(peak_running, len(alive))
            peak_rss = max(peak_rss, sum(_rss_gb(p) for p in alive))
            waiting_seen = max(waiting_seen, states.count("queued") - len(alive))
            if all(s in ("succeeded", "failed", "cancelled") for s in states):
                break
            time.sleep(0.1)
        wall = time.monotonic() - started
        final = list_jobs()
        state = queue_state(JobStore())
    succeeded = sum(v.status.state == "succeeded" for v in final)
    declared = views[0].spec.resources.mem_gb
    peaks = [v.status.peak_rss_gb or 0 for v in final]
    return [
        Row(
            "jobs",
            f"20 perplexity jobs on the demo model submitted at once ({slots} slots, "
            f"{budget:g} GB budget, each declares {declared:g} GB)",
            f"{succeeded}/20 succeeded; at most {peak_running} ran at once; {waiting_seen} "
            f"waited in the queue at the peak; queue empty after: {not state.waiting}",
            f"peak RSS of the running jobs together {peak_rss:.2f} GB (one job's peak "
            f"{max(peaks):.2f} GB); submit of 20 took {submit_s:.1f} s; all done in {wall:.0f} s",
            ok=succeeded == 20
            and peak_running <= slots
            and peak_rss <= budget
            and max(peaks) <= declared,
        )
    ]


# --- hostile ids and SLURM options --------------------------------------------------------------
HOSTILE = [
    "../../x",
    "/etc/passwd",
    "..",
    "x/../../y",
    "a;b",
    "$(touch /tmp/p)",
    "x\ny",
    "x\0y",
    "..\\x",
    "%2e%2e%2fx",
    "x" * 500,
    "",
]


@scenario("jobs-inputs")
def hostile_inputs(scratch: Path) -> list[Row]:
    from engine.errors import SubnetScopeError
    from engine.jobs import JobStore, Resources, cancel_job, get_job, submit
    from engine.jobs.runners import slurm_config, slurm_env
    from engine.jobs.store import read_view

    cache = scratch / "cache"
    rows = []
    with cache_at(cache):
        JobStore()
        outside = scratch / "planted"
        outside.mkdir()
        (outside / "status.json").write_text('{"state": "running", "pid": 1}')
        (outside / "spec.json").write_text(json.dumps({"id": "planted", **_spec()}))
        before = sha(outside / "status.json")
        refused = 0
        for value in [*HOSTILE, str(outside), "../planted"]:
            for call in (get_job, cancel_job):
                try:
                    call(value)
                except SubnetScopeError:
                    refused += 1
        rows.append(
            Row(
                "inputs",
                f"{len(HOSTILE) + 2} traversal / injection strings as job ids to get_job and "
                "cancel_job (the Runs and Sparsity pages' ?job=, the CLI's jobs show/cancel)",
                f"{refused} of {2 * (len(HOSTILE) + 2)} refused with one sentence; the planted "
                "folder outside the jobs folder is untouched, no signal sent",
                ok=refused == 2 * (len(HOSTILE) + 2) and sha(outside / "status.json") == before,
            )
        )
        cli = subprocess.run(
            [sys.executable, "-m", "engine", "jobs", "show", "../../etc"],
            cwd=ROOT,
            env=engine_env(cache),
            capture_output=True,
            text=True,
            timeout=120,
        )
        rows.append(
            Row(
                "inputs",
                "`python -m engine jobs show ../../etc`",
                f"exit {cli.returncode}: {cli.stderr.strip()[:100]}",
                ok=cli.returncode != 0 and "Traceback" not in cli.stderr,
            )
        )
        count = len(list((cache / "jobs").iterdir()))
        partitions = ["gpu\n#SBATCH --wrap=rm", "gpu;rm -rf ~", "$(id)", "a b", "gpu`x`"]
        bad = 0
        for partition in partitions:
            try:
                submit(
                    "diagnostics.sleep", backend="slurm", resources=Resources(partition=partition)
                )
            except SubnetScopeError:
                bad += 1
        (cache / "slurm.json").write_text(json.dumps({"account": "lab\n#SBATCH --uid=0"}))
        try:
            slurm_config()
            config = "accepted (!)"
        except SubnetScopeError as exc:
            config = str(exc)
        rows.append(
            Row(
                "inputs",
                "SLURM partitions with a newline, ';', '$( )', a space, backticks; a slurm.json "
                "value with a newline",
                f"{bad}/{len(partitions)} refused before any folder was written; the config: "
                f"'{config[:80]}'",
                ok=bad == len(partitions)
                and len(list((cache / "jobs").iterdir())) == count
                and "newline" in config,
            )
        )
        secrets = {
            "HF_TOKEN": "hf_x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "GITHUB_TOKEN": "x",
            "WANDB_API_KEY": "x",
            "MY_PASSWORD": "x",
        }
        with cache_at(cache, **secrets):
            view = read_view(outside)
            env = slurm_env(view) if view else {}
        leaked = sorted(set(secrets) & set(env))
        rows.append(
            Row(
                "inputs",
                "tokens in the dashboard's environment (HF_TOKEN, AWS_SECRET_ACCESS_KEY, "
                "GITHUB_TOKEN, WANDB_API_KEY, MY_PASSWORD) when a SLURM job is submitted",
                f"passed to submitit's pickled submission: {leaked or 'none'}; "
                f"{len(env)} allow-listed variables passed",
                ok=not leaked and "PATH" in env,
            )
        )
    return rows
