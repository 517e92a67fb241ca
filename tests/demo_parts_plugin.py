"""A demo part for tests of concurrent `build_demo` in other processes (SUBNETSCOPE_JOB_MODULES)."""

from engine.demo import DemoPart, demo_part

demo_part(DemoPart("test-nap", "A quick job", "diagnostics.sleep", {"seconds": 0.3, "steps": 3}))
