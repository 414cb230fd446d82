"""The embedded demo: a UI-layout product, a programmatic teacher, simulated users, the loop."""

from tuneloop.demo.run import DemoSummary, run_demo

__all__ = [
    "DemoSummary",
    "run_demo",
]
