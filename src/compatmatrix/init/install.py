"""How the running compatmatrix was installed, as a requirement CI can install it from.

Read from the ``compatmatrix`` distribution's PEP 610 ``direct_url.json``: a VCS install
becomes ``compatmatrix @ git+URL@commit``, a remote archive ``compatmatrix @ URL``, an
install from an index (no direct_url.json) ``compatmatrix==<version>``. A local folder or
file cannot be reached from CI: the requirement is plain ``compatmatrix``, with a note.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass

__all__ = ["DISTRIBUTION", "InstallRequirement", "install_requirement"]

DISTRIBUTION = "compatmatrix"
_LOCAL_HINT = ("CI cannot reach a local path: set the requirement in noxfile.py's script "
               "block (and ci.install in matrix.yaml) to where CI can install compatmatrix "
               "from, e.g. 'compatmatrix @ git+https://github.com/OWNER/compatmatrix@COMMIT' "
               "or 'compatmatrix==VERSION'")


@dataclass(frozen=True)
class InstallRequirement:
    requirement: str
    note: str = ""  # printed by init: why the requirement should be edited


def install_requirement(
        distribution: importlib.metadata.Distribution | None = None) -> InstallRequirement:
    """The requirement that installs this compatmatrix; ``distribution`` is for tests."""
    if distribution is None:
        try:
            distribution = importlib.metadata.distribution(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            return InstallRequirement(DISTRIBUTION, "compatmatrix runs from a source tree, not "
                                      "an installed distribution; " + _LOCAL_HINT)
    version = distribution.version
    text = distribution.read_text("direct_url.json")
    if not text:
        return InstallRequirement(f"{DISTRIBUTION}=={version}")  # from an index
    try:
        data = json.loads(text)
        url = str(data["url"])
    except (ValueError, KeyError, TypeError):
        return InstallRequirement(f"{DISTRIBUTION}=={version}",
                                  "direct_url.json of compatmatrix is not readable; assumed "
                                  f"it came from an index as compatmatrix=={version}")
    if url.startswith("file:"):
        where = url[len("file://"):] if url.startswith("file://") else url
        return InstallRequirement(DISTRIBUTION, f"compatmatrix {version} was installed from "
                                  f"the local path {where}; " + _LOCAL_HINT)
    vcs = data.get("vcs_info")
    subdirectory = data.get("subdirectory")
    fragment = f"#subdirectory={subdirectory}" if subdirectory else ""
    if isinstance(vcs, dict):
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        kind = vcs.get("vcs", "git")
        revision = f"@{commit}" if commit else ""
        return InstallRequirement(f"{DISTRIBUTION} @ {kind}+{url}{revision}{fragment}")
    return InstallRequirement(f"{DISTRIBUTION} @ {url}{fragment}")
