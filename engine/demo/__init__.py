"""The offline demo workspace: the parts each view needs, the jobs that build them, their state."""

from engine.demo.parts import (
    DemoPart,
    PartState,
    build_demo,
    demo_part,
    demo_status,
    load_parts,
)

__all__ = ["DemoPart", "PartState", "build_demo", "demo_part", "demo_status", "load_parts"]
