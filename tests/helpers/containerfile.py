"""packaging/container/Containerfile read as an engine reads its final stage: no
container engine runs here, so the tests take the image's promises from the file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

CONTAINERFILE = Path(__file__).resolve().parents[2] / "packaging" / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]
    stages = [i for i, pair in enumerate(pairs) if pair[0] == "FROM"]
    return [(pair[0], pair[1]) for pair in pairs[stages[-1] :]]


def image_environment() -> dict[str, str]:
    """What the final stage's ENV instructions (KEY=VALUE forms) put in the image's
    environment."""
    environment: dict[str, str] = {}
    for instruction, arguments in instructions():
        if instruction == "ENV":
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                environment[key] = value
    return environment
