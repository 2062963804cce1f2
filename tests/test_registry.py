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


def test_the_pointer_in_the_database_is_shared_and_adopts_an_old_file_pointer(tmp_path, database_url):
    from core.store import FeedbackStore

    files = ModelRegistry(tmp_path)  # an install from before the database pointer
    v1, v2 = publish(files, "a"), publish(files, "b")
    files.promote("intent", v1)
    files.promote("intent", v2)
    one, two = ModelRegistry(tmp_path, store=FeedbackStore(database_url)), ModelRegistry(tmp_path, store=FeedbackStore(database_url))
    assert one.current_version("intent") == "v0002"  # adopted once, history included
    assert one.rollback("intent") == "v0001" and two.current_version("intent") == "v0001"
    two.promote("intent", v2, reason="manual")
    assert one.current_version("intent") == "v0002" and files.current_version("intent") == "v0002"  # the file mirrors it
    assert [m["version"] for m in one.store.serving_moves("intent")] == ["v0001", "v0002", "v0001", "v0002"]


def test_replicas_starting_together_adopt_an_old_file_pointer_once(tmp_path, database_url):
    import threading

    from core.store import FeedbackStore

    files = ModelRegistry(tmp_path)
    v1, v2 = publish(files, "a"), publish(files, "b")
    files.promote("intent", v1)
    files.promote("intent", v2)
    replicas = [ModelRegistry(tmp_path, store=FeedbackStore(database_url)) for _ in range(6)]
    start = threading.Barrier(len(replicas))
    seen = []

    def first_look(registry: ModelRegistry) -> None:
        start.wait()
        seen.append(registry.current_version("intent"))

    threads = [threading.Thread(target=first_look, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == ["v0002"] * 6
    assert [m["version"] for m in replicas[0].store.serving_moves("intent")] == ["v0001", "v0002"]  # not once per replica


def test_a_server_switches_within_a_second_and_reads_the_pointer_at_most_once_a_second(settings):
    """Two replicas on one database: a promotion through one reaches the other within model_check_s (1 s)."""
    import shutil
    import time
    from dataclasses import replace

    from csbot.wiring import open_assistant

    replica = open_assistant(replace(settings, model_check_s=1.0)).warm_up()
    other = open_assistant(settings)
    assert replica.respond("I lost my card").model_version == "v0001"
    reads = []
    original = replica.registry.store.serving_version
    replica.registry.store.serving_version = lambda kind: reads.append(kind) or original(kind)
    started = time.monotonic()
    for _ in range(20):
        replica.respond("where is my card")
    seconds = time.monotonic() - started
    assert len(reads) <= 2 * (int(seconds) + 1)  # intent and ranker, each at most once a second (not 40 reads)
    staging = other.registry.staging_dir("intent")
    shutil.copytree(other.registry.path("intent", "v0001"), staging, dirs_exist_ok=True)
    version = other.registry.publish("intent", staging, {**other.registry.card("intent", "v0001"), "note": "copy"})
    promoted_at = time.monotonic()
    other.registry.promote("intent", version, reason="through the other replica")
    while replica.respond("where is my card").model_version != version:
        assert time.monotonic() - promoted_at < 5.0, "the promotion did not reach the other replica within 5 s"
        time.sleep(0.1)
    assert time.monotonic() - promoted_at <= 2.0
