"""A demo part for tests of concurrent `build_demo` in other processes (SUBNETSCOPE_JOB_MODULES);
importing it registers the part, so only those subprocesses import it."""

from engine.demo import DemoPart, demo_part

NAP = {"seconds": 0.3, "steps": 3, "tag": "test-nap"}  # tests/test_jobs_queue.py has the same

demo_part(DemoPart("test-nap", "A quick job", "diagnostics.sleep", NAP))
