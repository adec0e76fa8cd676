from metacheck import problems

HEADER = "Metadata-Version: 2.1\nName: kern\nVersion: 1.0\n"


def test_unbounded_torch():
    assert problems(HEADER + "Requires-Dist: torch\n") == [
        "torch is required without a version range"]


def test_local_version():
    assert problems(HEADER + "Requires-Dist: torch==2.13.0+cu130\n") == [
        "torch names a local version (==2.13.0+cu130)"]


def test_clean():
    assert problems(HEADER + "Requires-Dist: torch>=2.13,<2.14\n") == []
