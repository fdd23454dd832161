"""The local store: complete folders only, published atomically, URIs that resolve back to folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.storage.store import STORAGE_ENV, Storage


def test_default_is_the_home_cache_and_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert Storage.resolve(None, home).root == str(home.cache)
    monkeypatch.setenv(STORAGE_ENV, "s3://bucket/prefix/")
    remote = Storage.resolve(None, home)
    assert remote.is_remote and remote.root == "s3://bucket/prefix"
    other = Storage.resolve("s3://other-bucket/prefix", home)  # copies of each store apart from the others'
    assert len({remote.mirror, other.mirror, home.cache}) == 3 and remote.mirror.is_relative_to(home.cache)
    assert Storage.resolve(str(tmp_path / "shared"), home).root == str(tmp_path / "shared")


@pytest.mark.parametrize("setting", ["s3://", "gs://bucket/x"])
def test_unusable_settings_are_user_errors(tmp_path: Path, setting: str) -> None:
    with pytest.raises(AdapterflowError, match="execution.storage"):
        Storage.resolve(setting, Home(tmp_path))


def test_a_folder_counts_once_its_marker_is_there_and_is_never_replaced(tmp_path: Path) -> None:
    store = Storage.local(tmp_path / "store")
    assert store.lookup("adapters", "k1", "metrics.json") is None
    staging = store.staging_dir("adapter")
    (staging / "weights.bin").write_bytes(b"w")
    store.publish(staging, "adapters", "k1", "metrics.json")
    assert store.lookup("adapters", "k1", "metrics.json") is None  # published without its marker: incomplete

    staging = store.staging_dir("adapter")
    (staging / "weights.bin").write_bytes(b"new")
    (staging / "metrics.json").write_text("{}")
    folder = store.publish(staging, "adapters", "k1", "metrics.json")  # complete: it takes the incomplete one's place
    assert store.lookup("adapters", "k1", "metrics.json") == folder
    assert store.fetch(store.uri("adapters", "k1")) == folder and (folder / "weights.bin").read_bytes() == b"new"

    staging = store.staging_dir("adapter")  # a concurrent run publishing the same key: the first copy stays
    (staging / "weights.bin").write_bytes(b"later")
    (staging / "metrics.json").write_text("{}")
    assert store.publish(staging, "adapters", "k1", "metrics.json") == folder
    assert (folder / "weights.bin").read_bytes() == b"new"
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_with_the_cache_off_a_result_gets_a_fresh_key_and_nothing_stored_is_reused(tmp_path: Path) -> None:
    store = Storage.local(tmp_path / "store")
    assert store.reusable("adapters", "k", "metrics.json", cache=True) == ("k", None)
    staging = store.staging_dir("adapter")
    (staging / "metrics.json").write_text("{}")
    folder = store.publish(staging, "adapters", "k", "metrics.json")
    assert store.reusable("adapters", "k", "metrics.json", cache=True) == ("k", folder)
    first, found = store.reusable("adapters", "k", "metrics.json", cache=False)
    second, _ = store.reusable("adapters", "k", "metrics.json", cache=False)
    assert found is None and first.startswith("k-") and len({"k", first, second}) == 3


def record_flushes(monkeypatch: pytest.MonkeyPatch, marker: Path) -> list[tuple[Path, bool]]:
    """Every path flushed to disk, with whether `marker` existed at that moment."""
    import adapterflow.storage.durable as durable

    flushed: list[tuple[Path, bool]] = []
    flush = durable.fsync_path

    def recording(path: Path) -> None:
        flushed.append((path, marker.is_file()))
        flush(path)

    monkeypatch.setattr(durable, "fsync_path", recording)
    return flushed


def test_publishing_flushes_every_file_then_the_marker_then_the_folders_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Storage.local(tmp_path / "store")
    staging = store.staging_dir("adapter")
    flushed = record_flushes(monkeypatch, staging / "metrics.json")
    (staging / "metrics.json").write_text("{}")  # written first, flushed last of the files
    (staging / "adapter").mkdir()
    (staging / "adapter" / "weights.bin").write_bytes(b"w")
    target = store.publish(staging, "adapters", "k", "metrics.json")
    assert [path for path, _ in flushed] == [staging / "adapter" / "weights.bin", staging / "metrics.json",
                                             staging / "adapter", staging, target.parent]


def test_a_folder_marked_in_place_gets_its_marker_once_every_file_in_it_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapterflow.storage.durable import mark_complete

    folder = tmp_path / "checkpoint-2"
    (folder / "optimizer").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"w")
    (folder / "optimizer" / "state.pt").write_bytes(b"o")
    flushed = record_flushes(monkeypatch, folder / "done.json")
    mark_complete(folder, "done.json", b'{"step": 2}')
    assert all(not marked for _, marked in flushed[:-1]) and flushed[-1] == (folder, True)  # the rename, flushed
    assert {path for path, _ in flushed} == {folder, folder / "optimizer", folder / "adapter_model.safetensors",
                                             folder / "optimizer" / "state.pt"}
    assert (folder / "done.json").read_bytes() == b'{"step": 2}' and not list(folder.glob(".*"))


def test_a_uri_of_another_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterflowError, match="not in this run's storage"):
        Storage.local(tmp_path / "a").fetch(str(tmp_path / "b" / "adapters" / "k"))


def test_records_round_trip_through_the_store(tmp_path: Path) -> None:
    store = Storage.local(tmp_path)
    store.put_json("records/run/train.json", {"key": "k"})
    assert store.get_json("records/run/train.json") == {"key": "k"}


def test_on_s3_the_marker_is_uploaded_after_every_other_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adapterflow.storage.store as storage

    uploaded: list[str] = []

    class Recorder:
        def upload_file(self, path: str, bucket: str, key: str) -> None:
            uploaded.append(key)

    monkeypatch.setattr(storage, "s3_client", Recorder)
    folder = tmp_path / "adapter"
    (folder / "adapter").mkdir(parents=True)
    for name in ("metrics.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json", "z.json"):
        (folder / name).write_text("x")
    store = Storage("s3://bucket/cache", tmp_path / "mirror")
    store.publish(folder, "adapters", "k", "metrics.json")
    assert uploaded[-1] == "cache/adapters/k/metrics.json" and len(uploaded) == 4
    assert (tmp_path / "mirror" / "adapters" / "k" / "metrics.json").is_file()  # and kept as this machine's copy


def test_a_staging_folder_is_removed_when_its_block_fails_and_kept_when_it_succeeds(tmp_path: Path) -> None:
    store = Storage.local(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt), store.staging("adapter") as failed:
        (failed / "half-written.bin").write_bytes(b"w")
        raise KeyboardInterrupt  # a Ctrl-C while training: the folder goes, the interrupt goes on
    assert not failed.exists()
    with store.staging("adapter") as finished:
        (finished / "weights.bin").write_bytes(b"w")
    assert (finished / "weights.bin").read_bytes() == b"w"  # for the caller to publish
