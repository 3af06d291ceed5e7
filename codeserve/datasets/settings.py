"""Where benchmark files are looked for and cached."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "codeserve" / "datasets"


class DatasetSettings(BaseSettings):
    """Dataset cache location and download policy.

    `CODESERVE_DATA_DIR` overrides the cache directory (for example a read-only folder of
    pre-fetched files); `CODESERVE_DATASET_DOWNLOAD=0` forbids network downloads.
    """

    model_config = SettingsConfigDict(env_prefix="CODESERVE_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_cache_dir)
    dataset_download: bool = True
    download_timeout_s: float = 60.0
