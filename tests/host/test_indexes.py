from __future__ import annotations

from pathlib import Path

from compatmatrix.host.indexes import (
    Indexes,
    expand_find_links,
    index_url_for,
    pip_config_find_links,
)


def test_variables_expand_and_unset_ones_drop_the_entry(tmp_path: Path) -> None:
    indexes = Indexes((), ("$WHEELS/extra", "${MISSING}/x", "~/w"))
    env = {"WHEELS": "/data/wheels", "HOME": str(tmp_path)}
    assert expand_find_links(indexes, env) == ["/data/wheels/extra", str(tmp_path / "w")]


def test_pip_config_is_read_from_environment_and_config_files(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /from/conf /second\n[install]\nfind-links = /third\n")
    env = {"PIP_FIND_LINKS": "/from/env", "PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    links = pip_config_find_links(env)
    assert links[0] == "/from/env"
    assert {"/from/conf", "/second", "/third"} <= set(links)
    assert expand_find_links(Indexes((), ("pip-config",)),
                             {**env, "PIP_CONFIG_FILE": "/dev/null"}) == ["/from/env"]
    assert expand_find_links(Indexes((), ("pip-config",)), env) == links


def test_variant_index_urls() -> None:
    indexes = Indexes((("cpu", "https://download.pytorch.org/whl/cpu"), ("cu130", "pypi")))
    assert index_url_for(indexes, "cpu") == "https://download.pytorch.org/whl/cpu"
    assert index_url_for(indexes, "cu130") is None
    assert index_url_for(indexes, "cu128") == "https://download.pytorch.org/whl/cu128"
    assert index_url_for(indexes, None) is None
