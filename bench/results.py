"""Appending a benchmark section to docs/benchmarks.md (shared by the bench scripts)."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nMeasured by the scripts in `bench/`; each section says the machine and the date. "
          "Ratios are within one run (these machines are shared and noisy).\n\n")


def append_section(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as fh:
        fh.write(text + "\n")


def publish(text: str, write: bool) -> None:
    """Print a bench's markdown section; with --write, append it to docs/benchmarks.md too."""
    print(text)
    if write:
        append_section(text)
