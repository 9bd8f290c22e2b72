"""Training, exact resume, data parallel, checkpoints and evaluation outputs."""

import json
import os
import subprocess
import sys

import pytest
import torch

import nested
from nested.checkpoint import read_config
from nested.errors import CheckpointError
from nested.train import preset, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _weights(path):
    return nested.load(path).state_dict()


def test_twenty_steps_lower_the_loss_and_resume_exactly(tmp_path):
    full = train(preset("smoke", out_dir=str(tmp_path / "full")), progress=False)
    hist = json.loads((tmp_path / "full" / "history.json").read_text())
    first = sum(h["loss"] for h in hist[:3]) / 3
    last = sum(h["loss"] for h in hist[-3:]) / 3
    assert last < first - 0.3, (first, last)
    assert full["eval"]["loss"] < 5.0  # below the 5.55 nats of a uniform guess over 256 bytes
    # half the run, stop, resume to the end: identical weights
    train(preset("smoke", out_dir=str(tmp_path / "half"), steps=10), progress=False)
    train(preset("smoke", out_dir=str(tmp_path / "half"), steps=20), resume=True, progress=False)
    a, b = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "half" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run(tmp_path):
    train(preset("smoke", out_dir=str(tmp_path / "a"), steps=5), progress=False)
    train(preset("smoke", out_dir=str(tmp_path / "b"), steps=5), progress=False)
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    args = ["--preset", "smoke", "--steps", "6", "--quiet", "--set", "eval_every=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "nested", "train", *args, "--out", str(tmp_path / "one")],
                   check=True, cwd=ROOT, env=env, capture_output=True)  # fmt: skip
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "nested", "train", *args, "--out", str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    a, b = _weights(tmp_path / "one" / "model"), _weights(tmp_path / "two" / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), max((a[k] - b[k]).abs().max() for k in a)


def test_checkpoint_round_trip_and_validation(tmp_path):
    model = nested.build_model("hope", d_model=32, cms_periods=(4,))
    path = nested.save(model, tmp_path / "ck", meta={"note": "x"})
    back = nested.load(path)
    assert back.checkpoint_meta == {"note": "x"}
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert read_config(path)["config"]["cms_periods"] == [4]


def test_pickled_truncated_and_mismatched_files_are_refused(tmp_path):
    model = nested.build_model("transformer", d_model=32)
    path = nested.save(model, tmp_path / "ck")
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    torch.save(model.state_dict(), weights)  # a pickle where safetensors belongs: never unpickled
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        nested.load(path)
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        nested.load(path)
    weights.write_bytes(good)
    doc = json.loads((path / "config.json").read_text())
    doc["config"]["d_model"] = 64
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="shapes"):
        nested.load(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        nested.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        nested.load(tmp_path / "nowhere")


def test_eval_cli_writes_json_and_csv(tmp_path):
    model = nested.build_model("hope", d_model=32, cms_periods=(4,))
    ck = nested.save(model, tmp_path / "ck")
    out = tmp_path / "ev"
    from nested.__main__ import main

    assert main(["eval", str(ck), "--per-position", "--recall", "recall", "--forgetting", "AB", "--n", "8",
                 "--seq-len", "32", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert len(res["per_position"]["loss"]) == 32
    assert [r["size"] for r in res["recall"]["rows"]] == [4, 8, 16, 32]
    assert {"A", "B"} <= set(res["forgetting"]["matrix"][0])
    for name in ("per_position_loss.csv", "recall_vs_context.csv", "forgetting_matrix.csv"):
        assert (out / name).read_text().count("\n") >= 2
    from nested.evaluate import recall_vs_context

    niah = recall_vs_context(model, kind="niah", n=2)
    assert [r["context_len"] for r in niah["rows"]] == [64, 128, 256, 512]


def test_configs_refuse_unknown_keys():
    from nested.config import ModelConfig
    from nested.train import TrainConfig

    with pytest.raises(ValueError, match=r"unknown config keys: \['bogus'\]"):
        ModelConfig.from_dict({"d_model": 64, "bogus": 1})
    with pytest.raises(ValueError, match=r"unknown training options: \['lrr'\]"):
        TrainConfig.from_dict({"lrr": 0.1})
    assert TrainConfig.from_dict({"lr": 0.1}).lr == 0.1


def test_a_stopped_run_keeps_its_last_step_and_resumes_exactly(tmp_path):
    """should_stop ends the run early with `last` written at the stop; resume continues to the same weights
    as an uninterrupted run. on_step sees every step."""
    cfg = preset("smoke", steps=8, eval_every=0, ckpt_every=0)
    full = train(preset("smoke", steps=8, eval_every=0, ckpt_every=0, out_dir=str(tmp_path / "full")), progress=False)
    seen = []
    half = train(preset("smoke", steps=8, eval_every=0, ckpt_every=0, out_dir=str(tmp_path / "half")), progress=False,
                 should_stop=lambda: len(seen) >= 3, on_step=seen.append)  # fmt: skip
    assert half["stopped"] and half["steps"] == 3 and [r["step"] for r in seen] == [1, 2, 3]
    assert json.loads((tmp_path / "half" / "last" / "trainer.json").read_text())["step"] == 3
    back = train(preset("smoke", steps=8, eval_every=0, ckpt_every=0, out_dir=str(tmp_path / "half")), resume=True,
                 progress=False)  # fmt: skip
    assert not back["stopped"] and back["steps"] == cfg.steps
    a, b = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "half" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["final_loss"] == back["final_loss"]


def test_init_starts_from_a_checkpoint_and_text_trains_on_a_user_string(tmp_path):
    start = nested.build_model("transformer", d_model=32, n_layers=1, seed=5)
    ck = nested.save(start, tmp_path / "start")
    text = "the quick brown fox jumps over the lazy dog. " * 20
    cfg = preset("smoke", steps=1, eval_every=0, lr=0.0, init=str(ck), task_args={"seq_len": 32, "text": text},
                 out_dir=str(tmp_path / "run"))  # fmt: skip
    out = train(cfg, progress=False)
    after = out["model"].state_dict()
    assert all(torch.equal(after[k], v) for k, v in start.state_dict().items())  # lr 0: the start's weights
    assert out["eval"]["loss"] < 6.0  # scored on the user's text
    from nested.tasks import TextTask

    for bad, match in [("", "empty"), ("   ", "empty"), ("short", "at least 34 bytes"), ("x" * 1_000_001, "at most")]:
        with pytest.raises(ValueError, match=match):
            TextTask(seq_len=32, text=bad)


def test_a_diverging_run_raises_before_the_step_and_keeps_finite_weights(tmp_path):
    seen = []
    with pytest.raises(FloatingPointError):
        train(preset("smoke", steps=20, lr=1e30, eval_every=0, out_dir=str(tmp_path / "d")), progress=False,
              on_step=seen.append)  # fmt: skip
    assert seen and all(r["loss"] == r["loss"] for r in seen)  # every recorded step was finite


def test_the_cli_trains_on_a_text_file_from_a_checkpoint(tmp_path, capsys):
    from nested.__main__ import main

    ck = nested.save(nested.build_model("transformer", d_model=32, n_layers=1), tmp_path / "start")
    (tmp_path / "notes.txt").write_text("a user's own notes, repeated. " * 10)
    args = ["train", "--preset", "smoke", "--steps", "2", "--quiet", "--init", str(ck), "--text",
            str(tmp_path / "notes.txt"), "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    meta = nested.load(tmp_path / "run" / "model").checkpoint_meta
    assert meta["train"]["init"] == str(ck) and meta["train"]["task_args"]["text"].startswith("a user's own")
    assert json.loads(capsys.readouterr().out)["steps"] == 2


def test_the_cli_says_what_went_wrong_without_a_traceback(tmp_path, capsys, monkeypatch):
    """Divergence (an AdamW rate of 1e30 overflows at step 2 on any machine; 1e3 stayed finite on some),
    --resume without a checkpoint, a full disk and a read-only folder: one clear line, exit
    code 1 or 2, and no half-written checkpoint."""
    from nested.__main__ import main

    out = str(tmp_path / "run")
    assert main(["train", "--preset", "smoke", "--set", "lr=1e30", "--steps", "20", "--quiet", "--out", out]) == 1
    assert "diverged" in capsys.readouterr().err
    assert main(["train", "--preset", "smoke", "--resume", "--quiet", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err

    good = nested.save(nested.build_model("transformer", d_model=16, n_layers=1), tmp_path / "ckpt")
    before = _weights(good)
    for exc in (OSError(28, "No space left on device"), PermissionError(13, "Read-only file system")):

        def fail(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr("nested.checkpoint.save_file", fail)
        with pytest.raises(OSError):
            nested.save(nested.build_model("transformer", d_model=16, n_layers=1, seed=1), good)
        assert all(torch.equal(before[k], v) for k, v in _weights(good).items())  # the old checkpoint stands
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".partial", ".old", ".tmp"))]
        code = main(["train", "--preset", "smoke", "--steps", "2", "--quiet", "--out", str(tmp_path / "full")])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("error: cannot write") and exc.strerror in err and "Traceback" not in err
        monkeypatch.undo()


def test_ship_takes_a_two_stage_run_only_when_it_continued_a_first_stage_of_the_recipes_length(tmp_path, monkeypatch):
    """A continued recipe (1,750 steps, then more from those weights with a fresh optimizer) ships a run
    whose `init` is a checkpoint of the first stage's length, adds that stage's cost to its card, and
    refuses a single-stage run or a continuation of another length."""
    import json

    from nested import cards
    from nested.train import preset

    monkeypatch.setitem(cards.SHIPPED, "tiny", {"preset": "languages-hope", "steps": 4, "continue_steps": 2,
                                                "what": "a test model"})  # fmt: skip
    monkeypatch.setattr(cards, "CHECKPOINTS", tmp_path / "shipped")
    model = nested.build_model("hope", d_model=16, n_layers=1, seed=0)
    recipe = json.loads(json.dumps(vars(preset("languages-hope", steps=4))))

    def run_dir(name, steps, init, seconds):
        d = tmp_path / name
        nested.save(model, d / "model", meta={"train": {**recipe, "steps": steps, "init": init}, "steps": steps,
                                              "tokens_seen": 100 * steps, "train_seconds": seconds})  # fmt: skip
        (d / "history.json").write_text(json.dumps([{"step": i, "loss": 2.0} for i in range(steps)]))
        return d

    first = run_dir("first", 4, None, 40.0)
    with pytest.raises(ValueError, match="not trained by the tiny recipe"):
        cards.ship("tiny", from_run=first)  # one stage where two are asked
    other = run_dir("other", 3, None, 30.0)
    with pytest.raises(ValueError, match="continued a 3-step run"):
        cards.ship("tiny", from_run=run_dir("wrong", 2, str(other / "model"), 20.0))
    dest = cards.ship("tiny", from_run=run_dir("second", 2, str(first / "model"), 20.0))
    meta = nested.load(dest).checkpoint_meta
    assert meta["steps"] == 6 and meta["stages"] == [4, 2]
    assert meta["tokens_seen"] == 600 and meta["train_seconds"] == 60.0
    assert "6 steps: 4, then 2 more from those weights with a fresh optimizer" in (dest / "README.md").read_text()


def test_ship_takes_a_second_stage_by_another_preset_and_writes_recall_curves(tmp_path, monkeypatch):
    """The recall models' recipe: MQAR, then MQAR + needles (`continue_preset`) from those weights. A second
    stage trained by the first stage's preset is refused; the card names the second preset and carries
    accuracy vs context on MQAR and one needle, equal to a recomputation."""
    import json

    from nested import cards
    from nested.train import preset

    monkeypatch.setitem(cards.SHIPPED, "tiny-recall", {"preset": "recall-mixed-transformer", "steps": 4,
                                                       "continue_preset": "recall-mix-transformer",
                                                       "continue_steps": 2, "what": "a test model"})  # fmt: skip
    monkeypatch.setattr(cards, "CHECKPOINTS", tmp_path / "shipped")
    monkeypatch.setattr(cards, "RECALL_CARD", {"mqar": (4, 8), "niah-single": (64,)})
    model = nested.build_model("transformer", d_model=16, n_layers=1, seed=0)

    def run_dir(name, recipe, steps, init):
        d = tmp_path / name
        train = {**json.loads(json.dumps(vars(preset(recipe, steps=steps)))), "init": init}
        nested.save(model, d / "model", meta={"train": train, "steps": steps, "tokens_seen": 10, "train_seconds": 1.0})
        (d / "history.json").write_text(json.dumps([{"step": i, "loss": 2.0} for i in range(steps)]))
        return d

    first = run_dir("first", "recall-mixed-transformer", 4, None)
    with pytest.raises(ValueError, match="then 2 by recall-mix-transformer"):
        cards.ship("tiny-recall", from_run=run_dir("same", "recall-mixed-transformer", 2, str(first / "model")))
    dest = cards.ship("tiny-recall", from_run=run_dir("second", "recall-mix-transformer", 2, str(first / "model")))
    meta = nested.load(dest).checkpoint_meta
    assert meta["continue_preset"] == "recall-mix-transformer" and meta["stages"] == [4, 2]
    rec = meta["recall_eval"]
    assert rec == cards.recall_eval(nested.load(dest).eval())
    assert set(rec["mqar"]) == {"4", "8"} and set(rec["niah-single"]) == {"64"}
    card = (dest / "README.md").read_text()
    assert (
        "more on `recall-mix-transformer` from those weights" in card
        and "; then `recall-mix` {}, optimizer adamw lr 0.001" in card
    )
    assert f"one needle by bytes of haystack 64 {rec['niah-single']['64']:.2f}" in card
