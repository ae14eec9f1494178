"""What every benchmark script ends with: a markdown report, printed and saved."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def publish(title: str, sections: list[str], name: str) -> None:
    """Print ``sections`` under a heading naming this machine; save as results/<name>.md."""
    heading = (
        f"# {title} — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    text = "\n".join([heading, "", *sections]) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
