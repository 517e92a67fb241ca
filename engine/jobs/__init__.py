"""Long work out of process: job folders, the local and SLURM runners, the job index."""

from engine.jobs.api import (
    cancel_job,
    get_job,
    job_events,
    job_log,
    job_result,
    list_jobs,
    refresh,
    submit,
    wait_job,
)
from engine.jobs.context import JobCancelled, JobContext
from engine.jobs.files import RESULT
from engine.jobs.model import (
    ACTIVE_STATES,
    BACKENDS,
    FINAL_STATES,
    STATES,
    JobSpec,
    JobStatus,
    JobView,
    Resources,
)
from engine.jobs.params import parse_params
from engine.jobs.queue import queue_state, save_queue_settings
from engine.jobs.registry import get_kind, job, load_kinds
from engine.jobs.split import consecutive, split_kinds, splits
from engine.jobs.store import JobStore
from engine.jobs.tensorboard import tensorboard_files

__all__ = [
    "ACTIVE_STATES",
    "BACKENDS",
    "FINAL_STATES",
    "RESULT",
    "STATES",
    "JobCancelled",
    "JobContext",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "JobView",
    "Resources",
    "cancel_job",
    "consecutive",
    "get_job",
    "get_kind",
    "job",
    "job_events",
    "job_log",
    "job_result",
    "list_jobs",
    "load_kinds",
    "parse_params",
    "queue_state",
    "refresh",
    "save_queue_settings",
    "split_kinds",
    "splits",
    "submit",
    "tensorboard_files",
    "wait_job",
]
