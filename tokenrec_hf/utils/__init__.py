"""Shared helpers: atomic artifact writes, Hub resolution and version checks."""

from .hub import HubUnreachableError, resolve_pretrained_folder
from .io import atomic_directory, atomic_write_json, atomic_write_text, load_json, save_safetensors_atomic
from .versioning import check_artifact_version, package_version_stamp

__all__ = [
    "HubUnreachableError",
    "atomic_directory",
    "atomic_write_json",
    "atomic_write_text",
    "check_artifact_version",
    "load_json",
    "package_version_stamp",
    "resolve_pretrained_folder",
    "save_safetensors_atomic",
]
