"""The Train page: the background trainer (caps, stop, resume, divergence, concurrency, workspace), the
cost estimate, the checkpoint download, and AppTest of every control and of the result on other pages."""

import gc
import io
import json
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import nested
from app import trainer
from app.registry import ROOT, page_for
from app.samples import sample_texts
from app.trainer import (
    Busy,
    Caps,
    Timing,
    TrainJob,
    Workspace,
    checkpoint_zip,
    estimate,
    parse_lr,
)
from nested.train import TrainConfig, train
from tests.apptest import step

MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 300
TINY = {"train_model": "transformer", "train_width": "32", "train_layers": "1", "train_batch": "4", "train_seq": "32"}


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(model="transformer", model_args={"d_model": 32, "n_layers": 1}, task_args={"seq_len": 32},
                batch_size=4, steps=6, eval_every=0, ckpt_every=0, out_dir=str(tmp_path / "run"))  # fmt: skip
    return TrainConfig(**{**base, **kw})


def weights(model) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


# -- the trainer, without Streamlit ------------------------------------------------------------------


def test_the_estimate_is_tokens_and_a_measured_step_time(tmp_path):
    cfg = tiny(tmp_path, steps=40)
    est = estimate(cfg, Caps(400, 10.0), timer=lambda c: Timing(1.0, 0.5) if c is cfg else Timing(0.0, 0.0))
    assert est.tokens == 40 * 4 * 32 and est.timing.step_s == 0.5 and est.seconds == 21.0 and est.capped
    assert "5,120 tokens" in est.line(Caps(400, 10.0)) and "10 s cap" in est.line(Caps(400, 10.0))
    quick = estimate(cfg, Caps(400, 60.0), timer=lambda c: Timing(0.0, 0.01))
    assert quick.seconds == pytest.approx(0.4) and not quick.capped
    recall = estimate(replace(cfg, task="recall", task_args={}), Caps(400, 60.0), timer=lambda c: Timing(0.0, 0.01))
    assert recall.tokens == 40 * 4 * 72  # a task's own sequence length (72 tokens for recall)


def test_stop_keeps_the_last_step_and_resume_continues_exactly(tmp_path):
    full = train(tiny(tmp_path, steps=30, out_dir=str(tmp_path / "full")), progress=False)
    cfg = tiny(tmp_path, steps=30)
    job = TrainJob(cfg, Caps(400, 60.0)).start()
    while job.running and job.step < 3:
        time.sleep(0.01)
    job.stop()
    job.join(60)
    assert job.status == "stopped" and 3 <= job.step < 30 and job.result["stopped"]
    assert json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())["step"] == job.step
    again = TrainJob(cfg, Caps(400, 60.0), resume=True).start()
    again.join(60)
    assert again.status == "done" and again.step == 30
    a, b = weights(full["model"]), weights(again.result["model"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in again.result["model"].parameters())  # handed out read-only


def test_the_time_cap_stops_a_run_and_the_step_cap_refuses_one(tmp_path):
    job = TrainJob(tiny(tmp_path, steps=50), Caps(400, 0.0)).start()
    job.join(60)
    assert job.status == "stopped" and "time cap" in job.stop_reason and job.result["steps"] == job.step == 0
    with pytest.raises(ValueError, match="over this device's cap of 10"):
        TrainJob(tiny(tmp_path, steps=11), Caps(10, 60.0))
    with pytest.raises(ValueError, match="no stopped run"):  # never a silent fresh start
        TrainJob(tiny(tmp_path, out_dir=str(tmp_path / "none")), Caps(400, 60.0), resume=True)


def test_divergence_is_caught_as_a_message(tmp_path):
    job = TrainJob(tiny(tmp_path, steps=40, lr=1e3), Caps(400, 60.0)).start()
    job.join(60)
    assert job.status == "diverged" and "diverged" in job.error and job.result is None
    with pytest.raises(FloatingPointError, match="3.5e\\+06 nats at step 7"):  # finite but far past a guess
        job._on_step({"step": 7, "loss": 3.5e6})


def test_a_process_runs_at_most_max_concurrent_trainings(tmp_path):
    taken = [trainer._SLOTS.acquire(blocking=False) for _ in range(trainer.MAX_CONCURRENT)]
    try:
        assert all(taken)
        with pytest.raises(Busy, match="try again"):
            TrainJob(tiny(tmp_path), Caps(400, 60.0)).start()
    finally:
        for _ in taken:
            trainer._SLOTS.release()
    job = TrainJob(tiny(tmp_path, steps=2), Caps(400, 60.0)).start()  # a slot is free again
    job.join(60)
    assert job.status == "done"


def test_a_dropped_workspace_removes_its_runs():
    ws = Workspace()
    root, run = ws.root, ws.new_run_dir()
    run.mkdir()
    second = ws.new_run_dir()
    second.mkdir()
    ws.prune(keep=second)
    assert second.name == "run-2" and second.exists() and not run.exists()  # one run on disk at a time
    del ws
    gc.collect()
    assert not root.exists()


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-1", "0", "abc", "", "1e9"])
def test_bad_learning_rates_are_refused_with_a_message(raw):
    with pytest.raises(ValueError, match="learning rate"):
        parse_lr(raw)


def test_the_download_is_a_checkpoint_nested_load_reads(tmp_path):
    model = nested.build_model("hope", d_model=32, n_layers=1, cms_periods=(4,), seed=3)
    data = checkpoint_zip(model, {"note": "yours"})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["checkpoint/config.json", "checkpoint/model.safetensors"]
        zf.extractall(tmp_path)
    back = nested.load(tmp_path / "checkpoint")
    assert back.checkpoint_meta == {"note": "yours"}
    assert all(torch.equal(back.state_dict()[k], v) for k, v in weights(model).items())


# -- the page ----------------------------------------------------------------------------------------


def open_page(**params) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for k, v in {**TINY, **params}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(str(page_for("train").path))
    return at.run()


def recipe(at) -> TrainConfig | None:
    return at.session_state["train_recipe"]


def finish(at) -> AppTest:
    """Wait for the session's run, then rerun the page (what the polling fragment does)."""
    at.session_state["train_job"].join(120)
    return at.run()


def test_every_recipe_control_shapes_the_run():
    at = open_page()
    assert not at.exception, [e.value for e in at.exception]
    cfg = recipe(at)
    assert (cfg.model, cfg.model_args, cfg.batch_size, cfg.task_args) == (
        "transformer", {"d_model": 32, "n_layers": 1}, 4, {"seq_len": 32})  # fmt: skip
    assert any("Cost: 100 steps x 128 tokens = **12,800 tokens**" in m.value for m in at.markdown)
    assert any("400 steps" in c.value and "120 s" in c.value for c in at.caption)  # the caps, stated
    at.number_input(key="train_steps").set_value(7).run()
    at.select_slider(key="train_batch").set_value(8).run()
    at.select_slider(key="train_seq").set_value(64).run()
    at.selectbox(key="train_optimizer").set_value("muon").run()
    at.text_input(key="train_lr").set_value("1e-2").run()
    at.number_input(key="train_seed").set_value(3).run()
    at.select_slider(key="train_layers").set_value(2).run()
    cfg = recipe(at)
    assert (cfg.steps, cfg.batch_size, cfg.task_args["seq_len"], cfg.optimizer, cfg.lr, cfg.seed) == (
        7, 8, 64, "muon", 0.01, 3)  # fmt: skip
    assert cfg.model_args["n_layers"] == 2 and any("7 steps x 512 tokens" in m.value for m in at.markdown)
    at.select_slider(key="train_width").set_value(64).run()
    at.selectbox(key="train_model").set_value("hope").run()
    assert recipe(at).model_args == {"d_model": 64, "n_layers": 2, "cms_periods": [16, 64]}
    at.selectbox(key="train_corpus").set_value("Booleans").run()
    assert recipe(at).task_args["text"] == sample_texts()["Booleans"]
    at.radio(key="train_source").set_value("A task").run()
    at.selectbox(key="train_task").set_value("associative recall").run()
    assert (recipe(at).task, recipe(at).task_args) == ("recall", {})
    at.radio(key="train_start").set_value("A shipped model (adapt)").run()
    at.selectbox(key="train_base").set_value("titans").run()
    cfg = recipe(at)
    assert cfg.model == "titans" and cfg.init.endswith("assets/checkpoints/titans-text")
    assert not at.exception


def test_train_then_the_stepper_and_continual_pages_run_the_result():
    at = open_page()
    at.number_input(key="train_steps").set_value(4).run()
    at.button(key="train_go").click().run()
    assert at.session_state["train_job"].running or at.session_state["train_job"].status == "done"
    at = finish(at)
    assert not at.exception and any("Training finished" in s.value for s in at.success)
    name = at.session_state["train_result"]
    assert name.startswith("yours: transformer-text-4") and name in at.sidebar.selectbox(key="model").options
    trained = at.session_state["session_models"][name]
    assert not any(p.requires_grad for p in trained.model.parameters())
    at.button(key="train_use").click().run()
    assert at.sidebar.selectbox(key="model").value == name
    assert any("transformer trained 4 steps" in c.value for c in at.sidebar.caption)
    at.switch_page(str(page_for("stepper").path)).run()
    assert not at.exception, [e.value for e in at.exception]
    step(at)
    run = at.session_state["stepper_run"]
    assert run.key[0] == name and run.computed >= 2  # the stepper streamed the session's model
    with torch.no_grad():
        logits = trained.model(torch.tensor([run.tokens[:2]]))[0, 0]
    assert torch.allclose(torch.tensor(run.trace.topk_probs[0][0]), torch.softmax(logits, -1).max(), atol=1e-3)
    at.switch_page(str(page_for("continual").path)).run()
    assert name in at.multiselect(key="cl_models").options
    at.multiselect(key="cl_models").set_value([name]).run()
    at.button(key="cl_feed_A").click().run()
    assert not at.exception and [lr.name for lr in at.session_state["cl_lab"].learners] == [name]


def test_a_run_that_ends_while_the_session_is_elsewhere_is_listed_there():
    at = open_page()
    at.number_input(key="train_steps").set_value(3).run()
    at.button(key="train_go").click().run()
    at.switch_page(str(page_for("stepper").path)).run()
    at.session_state["train_job"].join(120)
    at.run()
    assert not at.exception and at.session_state["train_result"] in at.sidebar.selectbox(key="model").options
    at.switch_page(str(page_for("train").path)).run()
    assert any("Training finished" in s.value for s in at.success)  # the page says so when you come back


def test_the_downloaded_checkpoint_holds_the_trained_weights(tmp_path):
    at = open_page()
    at.number_input(key="train_steps").set_value(3).run()
    at.button(key="train_go").click().run()
    at = finish(at)
    job, entry = at.session_state["train_job"], at.session_state["session_models"][at.session_state["train_result"]]
    assert at.get("download_button")[0].proto.label == "Download the checkpoint (.zip)"
    with zipfile.ZipFile(io.BytesIO(checkpoint_zip(entry.model, entry.meta))) as zf:  # what the button serves
        zf.extractall(tmp_path)
    back = nested.load(tmp_path / "checkpoint")
    a, b = weights(job.result["model"]), weights(back)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert back.checkpoint_meta["steps"] == 3 and back.checkpoint_meta["train"]["model"] == "transformer"


def test_stop_then_resume_on_the_page():
    at = open_page(train_batch="16", train_seq="128")
    at.number_input(key="train_steps").set_value(400).run()
    at.button(key="train_go").click().run()
    while at.session_state["train_job"].running and at.session_state["train_job"].step < 2:
        time.sleep(0.05)
    at.button(key="train_stop").click().run()
    at = finish(at)
    job = at.session_state["train_job"]
    assert job.status == "stopped" and job.step < 400
    assert any(f"stopped at step {job.step} of 400" in s.value for s in at.success)
    stopped_name = at.session_state["train_result"]
    at.button(key="train_resume").click().run()
    again = at.session_state["train_job"]
    assert again is not job and again.resume and again.cfg == job.cfg and again.start_step == job.step
    while again.running and again.step <= job.step:
        time.sleep(0.05)
    at.button(key="train_stop").click().run()
    at = finish(at)
    assert again.status == "stopped" and again.history[0][0] == job.step + 1 and again.step > job.step
    assert at.session_state["train_result"] != stopped_name and stopped_name in at.session_state["session_models"]


def test_adapt_fine_tunes_the_shipped_checkpoint():
    at = open_page(train_start="A shipped model (adapt)", train_base="transformer")
    at.number_input(key="train_steps").set_value(2).run()
    at.text_input(key="train_lr").set_value("1e-4").run()
    at.button(key="train_go").click().run()
    at = finish(at)
    shipped = weights(nested.load(ROOT / "assets" / "checkpoints" / "transformer-text"))
    tuned = weights(at.session_state["train_job"].result["model"])
    diffs = [float((tuned[k] - shipped[k]).abs().max()) for k in shipped]
    assert 0 < max(diffs) < 0.01  # moved from the shipped weights, by little


def test_bad_input_gets_a_message_and_keeps_the_session():
    at = open_page()
    at.number_input(key="train_steps").set_value(2).run()
    at.button(key="train_go").click().run()
    at = finish(at)
    kept = at.session_state["train_result"]
    for raw in ["nan", "-3", "fast"]:
        at.text_input(key="train_lr").set_value(raw).run()
        assert any("learning rate" in e.value for e in at.error), raw
        assert recipe(at) is None and all(b.key != "train_go" for b in at.button)
    at.text_input(key="train_lr").set_value("1000").run()
    at.number_input(key="train_steps").set_value(40).run()
    at.button(key="train_go").click().run()
    at = finish(at)
    assert at.session_state["train_job"].status == "diverged"
    assert any("diverged" in e.value and "earlier result is kept" in e.value for e in at.error)
    assert at.session_state["train_result"] == kept and kept in at.sidebar.selectbox(key="model").options
    at.radio(key="train_source").set_value("Your text").run()
    assert any("the text is empty" in e.value for e in at.error)
    at.text_area(key="train_text").set_value("too short").run()
    assert any("at least 34 bytes" in e.value for e in at.error)
    at.text_area(key="train_text").set_value("the cat sat on the mat. " * 10).run()
    assert recipe(at).task_args["text"].startswith("the cat sat")
    assert not any("Cannot train" in e.value for e in at.error)
    up = at.get("file_uploader")[0]
    up.set_value(("big.txt", b"x" * 1_100_000, "text/plain")).run()
    assert any("the file is 1.1 MB; the limit is 1 MB" in e.value for e in at.error) and recipe(at) is None
    at.get("file_uploader")[0].set_value(("mb.txt", b"y" * 1_000_000, "text/plain")).run()
    assert any("training streams the first 100,000" in i.value for i in at.info)
    assert len(recipe(at).task_args["text"]) == 100_000
    assert not at.exception and at.session_state["train_result"] == kept


def test_a_third_session_is_told_to_wait():
    at = open_page()
    at.number_input(key="train_steps").set_value(2).run()
    at.button(key="train_go").click().run()
    at = finish(at)
    earlier = at.session_state["train_job"]
    taken = [trainer._SLOTS.acquire(blocking=False) for _ in range(trainer.MAX_CONCURRENT)]
    try:
        at.button(key="train_go").click().run()
    finally:
        for _ in taken:
            trainer._SLOTS.release()
    assert not at.exception and any("Please wait" in w.value for w in at.warning)
    assert at.session_state["train_job"] is earlier and Path(earlier.cfg.out_dir, "last").is_dir()  # nothing lost


def test_the_time_cap_on_the_page_stops_the_run_with_a_message(monkeypatch):
    monkeypatch.setitem(trainer.CAPS, "cpu", Caps(400, 0.0))  # every start stops at once
    at = open_page()
    assert any("at most **0 s**" in c.value for c in at.caption)
    at.button(key="train_go").click().run()
    at = finish(at)
    assert not at.exception and any("Stopped before the first step (the 0 s time cap)" in i.value for i in at.info)
    assert "train_result" not in at.session_state  # nothing kept from a run of no steps
    assert at.button(key="train_resume")  # the stopped run can go on
