"""Writing show files into a test's temporary directory."""

from __future__ import annotations

import os
import textwrap


def write_show(directory: str, text: str, name: str = "show.yaml") -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(textwrap.dedent(text).lstrip("\n"))
    return path
