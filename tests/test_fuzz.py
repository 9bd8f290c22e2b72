"""Hostile input never reaches the user as a traceback (issue: a real workshop): every page under URLs
whose every parameter holds a value that broke pages before, trace archives that inflate or carry
objects, and seeded builds racing in threads."""

import io
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nested
from app.registry import PAGES, ROOT
from nested.trace import MAX_TRACE_BYTES, Trace
from tests.apptest import open_page

HOSTILE = ["²", "9" * 4400, "1e999", "-1", "<script>alert(1)</script>"]


def page_keys(spec) -> list[str]:
    """Every widget key a page (and the app modules it imports) can take from the URL."""
    src = spec.path.read_text()
    for mod in set(re.findall(r"from app(?:\.| import )(\w+)", src)):
        f = ROOT / "app" / f"{mod}.py"
        if f.is_file():
            src += f.read_text()
    return sorted(set(re.findall(r'key="([a-z]+_[a-z_]+)"', src)) | {"seed", "model", "preset", "lesson"})


@pytest.mark.parametrize("value", HOSTILE, ids=["superscript", "4400-digits", "1e999", "negative", "markup"])
@pytest.mark.parametrize("spec", PAGES, ids=[p.url_path for p in PAGES])
def test_every_parameter_of_every_page_at_once_never_raises(spec, value):
    at = open_page(spec.url_path, **{k: value for k in page_keys(spec)})
    assert not at.exception, [e.value for e in at.exception][:1]
    assert at.title, "the page did not draw"


def test_a_dropped_seed_is_named_and_the_default_used():
    at = open_page("race", race_seed="1e999")
    assert any("race_seed" in w.value for w in at.warning)
    assert at.number_input(key="race_seed").value == 0


def test_a_valid_seed_in_the_link_is_kept_and_a_change_goes_back_to_the_link():
    at = open_page("race", race_seed="7")
    assert at.number_input(key="race_seed").value == 7
    at.number_input(key="race_seed").set_value(9).run()
    assert at.query_params["race_seed"] in ("9", ["9"])


def _npz(arrays: dict) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    buf.seek(0)
    return buf


def test_an_archive_that_would_inflate_is_refused_before_any_array_is_read(monkeypatch):
    bomb = _npz({"header": np.array("{}"), "tokens": np.zeros(MAX_TRACE_BYTES // 8 + 1024)})
    assert len(bomb.getvalue()) < 2**20  # a small upload...
    read = []
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(1))
    with pytest.raises(ValueError, match="inflate"):
        Trace.load(bomb)
    assert not read  # ...refused from the zip directory, nothing decompressed


@pytest.mark.parametrize(
    "arrays",
    [
        {"header": np.array(["x", {"a": 1}], dtype=object)},  # an object array needs pickle
        {
            "header": np.array(
                '{"version": 2, "n_layers": 1, "top_k": 1, "max_snapshots": 1, "updates": [], '
                '"snapshot_tokens": {}, "snapshot_names": {}}'
            ),
            "tokens": np.zeros(3),
            "loss": np.full(3, np.nan),
            "eta": np.zeros((3, 5, 5)),
            "alpha": np.zeros((3, 1, 1)),
            "surprise": np.zeros((3, 1, 1)),
            "topk_ids": np.zeros((3, 1)),
            "topk_probs": np.zeros((3, 1)),
        },  # wrong shapes
    ],
    ids=["object-array", "wrong-shapes"],
)
def test_crafted_traces_are_refused_with_a_reason(arrays):
    with pytest.raises(ValueError, match="not a valid trace"):
        Trace.load(_npz(arrays))


@pytest.mark.parametrize("gates", [[5], "x", [{"eta": 3, "alpha": ["a"]}], None, [{"eta": ["a", "b"]}]])
def test_what_a_loaded_trace_says_of_its_rows_is_read_defensively(gates):
    tr = Trace(n_layers=1, meta={"gates": gates})
    labels = tr.gate_labels(0)
    assert set(labels) == {"eta", "alpha"} and all(isinstance(x, str) for v in labels.values() for x in v)
    assert labels["eta"] == (("a", "b") if gates == [{"eta": ["a", "b"]}] else ("learning rate η_t", "η"))


def test_a_trace_whose_start_is_not_a_number_is_refused(tmp_path):
    tr = nested.build_model("transformer", d_model=16, n_layers=1).stream(torch.tensor([[1, 2, 3]])).trace
    tr.meta["start"] = "abc"
    buf = io.BytesIO()
    tr.save(buf)
    buf.seek(0)
    with pytest.raises(ValueError, match="wrong shapes"):
        Trace.load(buf)


def test_a_non_zip_upload_is_refused():
    with pytest.raises(ValueError, match="not a valid trace"):
        Trace.load(io.BytesIO(b"\x00" * 100))


def test_a_pickled_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    good = nested.checkpoint.save(nested.build_model("transformer", d_model=16, n_layers=1), tmp_path / "ckpt")
    torch.save({"w": Payload()}, good / "model.safetensors")  # a pickle where the tensors should be
    with pytest.raises(nested.CheckpointError):
        nested.load(good)
    assert not marker.exists()


def test_seeded_builds_racing_in_threads_get_the_weights_of_their_seed():
    expected = {s: nested.build_model("deltanet", d_model=32, n_layers=1, seed=s).state_dict() for s in (3, 45)}
    got, errors = [], []

    def build(seed):
        try:
            got.append((seed, nested.build_model("deltanet", d_model=32, n_layers=1, seed=seed).state_dict()))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(3 if i % 2 else 45,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 16
    for seed, sd in got:
        assert all(torch.equal(sd[k], expected[seed][k]) for k in sd), seed


def test_a_zip_directory_is_checked_on_an_open_file_and_the_file_is_rewound():
    tr = nested.build_model("transformer", d_model=16, n_layers=1).stream(torch.tensor([[1, 2, 3]])).trace
    buf = io.BytesIO()
    tr.save(buf)
    buf.seek(0)
    assert zipfile.is_zipfile(buf)
    buf.seek(0)
    assert Trace.load(buf).tokens == [1, 2, 3]
