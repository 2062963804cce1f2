from __future__ import annotations

import pytest

from core.errors import InputError, ModelNotFound
from core.registry import ModelRegistry


def publish(reg: ModelRegistry, note: str) -> str:
    staging = reg.staging_dir("intent")
    (staging / "weights.bin").write_text(note)
    return reg.publish("intent", staging, {"note": note})


def test_publish_promote_rollback(tmp_path):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ModelNotFound):
        reg.current("intent")
    v1, v2 = publish(reg, "a"), publish(reg, "b")
    assert (v1, v2) == ("v0001", "v0002")
    reg.promote("intent", v1)
    reg.promote("intent", v2)
    assert reg.current("intent")[0] == "v0002"
    assert reg.rollback("intent") == "v0001"
    assert reg.current_version("intent") == "v0001"
    assert [c["serving"] for c in reg.versions("intent")] == [True, False]


def test_incomplete_or_unknown_versions_cannot_be_promoted(tmp_path):
    reg = ModelRegistry(tmp_path)
    staging = reg.staging_dir("intent")  # a training that crashed before publishing
    (staging / "weights.bin").write_text("half")
    with pytest.raises(ModelNotFound):
        reg.promote("intent", "v0001")
    with pytest.raises(InputError):
        reg.promote("intent", "../../etc")
    assert reg.versions("intent") == []
    assert reg.clean_staging("intent") == 1


def test_rollback_without_history_is_a_plain_error(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.promote("intent", publish(reg, "a"))
    with pytest.raises(ModelNotFound, match="no earlier"):
        reg.rollback("intent")
