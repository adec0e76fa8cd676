"""The record's artifact: the wheel a cell tested, written and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from compatmatrix.model.outcomes import Artifact
from compatmatrix.model.record import CellRecord, RecordError, Status, load_record


def test_the_artifact_round_trips_and_is_checked(tmp_path: Path) -> None:
    record = CellRecord(cell="py3.11", axes={"python": "3.11"}, status=Status.PASSED,
                        artifact=Artifact("k-1.0-py3-none-any.whl", "ab" * 32, "given"))
    record.write(tmp_path / "r.json")
    again = load_record(tmp_path / "r.json")
    assert again.artifact == record.artifact
    assert again.to_json()["artifact"] == {"file": "k-1.0-py3-none-any.whl",
                                           "sha256": "ab" * 32, "origin": "given"}
    assert CellRecord.from_json({"cell": "c", "axes": {}, "status": "passed"}).artifact is None
    for bad in ({"file": "k.whl", "sha256": "00", "origin": "stolen"}, {"file": 1}, []):
        with pytest.raises(RecordError):
            CellRecord.from_json({"cell": "c", "axes": {}, "status": "passed",
                                  "artifact": bad})
