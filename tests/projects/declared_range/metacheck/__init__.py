"""Checks the METADATA of torch-extension wheels before they are uploaded."""

from __future__ import annotations

__version__ = "1.4.0"

from packaging.metadata import Metadata


def problems(metadata_text: str) -> list[str]:
    """What a user installing the wheel would trip over."""
    meta = Metadata.from_email(metadata_text, validate=False)
    found = []
    for req in meta.requires_dist or ():
        if req.name == "torch" and not req.specifier:
            found.append("torch is required without a version range")
        if any("+" in spec.version for spec in req.specifier):
            found.append(f"{req.name} names a local version ({req.specifier})")
    return found
