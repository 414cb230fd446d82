"""The embedded demo: a UI-layout product, a programmatic teacher, simulated users, the loop."""
