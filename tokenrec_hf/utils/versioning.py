"""Package version stamps in saved artifacts, and the warning for artifacts from a newer release."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version
from transformers.utils import logging

from ..version import __version__

logger = logging.get_logger(__name__)


def package_version_stamp() -> dict[str, str]:
    """Return the fields that every saved artifact records about the package that wrote it."""
    return {"tokenrec_hf_version": __version__}


def check_artifact_version(saved_version: str | None, artifact: str) -> None:
    """Warn when `artifact` was written by a newer tokenrec_hf than the one installed."""
    if saved_version is None:
        return
    try:
        newer = Version(saved_version) > Version(__version__)
    except InvalidVersion:
        logger.warning(f"{artifact} records an unreadable tokenrec_hf version {saved_version!r}; loading it anyway.")
        return
    if newer:
        logger.warning(
            f"{artifact} was saved by tokenrec_hf {saved_version}, which is newer than the installed "
            f"{__version__}. Fields added since then are ignored. Upgrade with `pip install -U tokenrec_hf`."
        )
