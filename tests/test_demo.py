"""The end-to-end demo's smoke version: every stage runs through the real CLIs and writes its files."""

import json
import subprocess
import sys

import pytest


def test_demo_smoke_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "tinygsm_jax.demo", "--smoke", "--out", str(out)]
    first = subprocess.run(cmd + ["--stop-after", "questions"], capture_output=True, text=True)
    assert first.returncode == 0 and "stopped after questions" in first.stdout, first.stderr[-2000:]
    assert not (out / "tokenizer").exists()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]

    assert proc.stdout.count("done earlier, skipped") == 3  # teacher, filter, questions
    for d in (out, out / "dev", out / "heldout"):
        report = json.loads((d / "report.json").read_text())
        assert report["n_questions"] == 8 and report["n_samples"] == 4
        for key in ("greedy@1", "pass@4", "maj@4", "verify@4", "random@4", "distinct@4",
                    "likelihood@4"):  # fmt: skip
            assert 0.0 <= report["metrics"][key] <= 1.0
        rows = [json.loads(line) for line in (d / "candidates.jsonl").read_text().splitlines()]
        assert len(rows) == 8 * 4 and all("score" in r for r in rows)
        assert (d / "report.md").is_file() and (d / "accuracy_vs_n.png").stat().st_size > 0
    assert (out / "generator" / "model.json").is_file()
    # The generator's dev accuracy during training, every 2 steps of the smoke run.
    evals = [
        json.loads(line) for line in (out / "generator" / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [e for e in evals if e.get("event") == "eval"]
    assert [e["step"] for e in evals] == [2, 4, 6], evals
    assert all(0.0 <= e["eval_accuracy"] <= 1.0 and e["eval_seconds"] > 0 for e in evals)
    assert json.loads((out / "verifier" / "model.json").read_text())["model"]["head"] == "value"
    assert "Headline" in proc.stdout and "held-out" in proc.stdout

    # Training questions never appear among the evaluation or verifier questions.
    def texts(path):
        return {json.loads(line)["question"] for line in path.read_text().splitlines()}

    # Dev (for choices), headline and verifier questions are disjoint from each other too.
    train = texts(out / "filtered" / "kept.jsonl")
    splits = [texts(out / "teacher" / f"{n}.jsonl") for n in ("eval", "dev", "verifier_questions")]
    assert all(len(q) == 8 for q in splits)
    for i, a in enumerate(splits):
        assert not train & a and not any(a & b for b in splits[i + 1 :])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["preset"] == "default" and settings["smoke"] is True

    # A rerun skips every finished stage.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert again.stdout.count("done earlier, skipped") == 12


def test_demo_bad_arguments_are_one_line(tmp_path):
    for extra, message in ((["--stop-after", "nope"], "unknown stage 'nope'"),
                           (["--bogus"], "unknown argument --bogus")):  # fmt: skip
        cmd = [sys.executable, "-m", "tinygsm_jax.demo", "--smoke", "--out", str(tmp_path / "d")]
        proc = subprocess.run(cmd + extra, capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("on", [False, True])
def test_demo_passes_the_execution_result_to_the_verifier_set_and_its_training(on, tmp_path):
    from helpers import demo_stages

    by_name = demo_stages(tmp_path, verifier_execution_result=on)
    [build] = by_name["verifier_set"].commands
    [train] = by_name["verifier"].commands
    [gen_build] = by_name["generator_data"].commands
    assert ("--execution-result" in build) is on
    assert ("--config.data.execution_result=True" in train) is on
    assert "--execution-result" not in gen_build  # problems have no execution result


def test_lift_preset_samples_checkpoints_its_generator_writes():
    """The lift preset's verifier-data and eval steps are checkpoints its generator keeps."""
    from tinygsm_jax.demo import PRESETS

    s = PRESETS["lift"]
    opts = dict(o.removeprefix("--config.").split("=") for o in s.generator)
    steps, every = int(opts["train.steps"]), int(opts["checkpoint.every"])
    for step in (*s.verifier_data_steps, s.eval_step):
        assert 0 < step <= steps and step % every == 0
    assert s.verifier_execution_result


def test_demo_refuses_to_resume_a_directory_of_other_settings(tmp_path):
    """A finished stage of one preset is never reused under another; the same settings resume."""
    import dataclasses

    from tinygsm_jax.cli import UserError
    from tinygsm_jax.demo import PRESETS, check_same_run

    out = tmp_path / "d"
    (out / ".stages").mkdir(parents=True)
    (out / ".stages" / "teacher.done").write_text("1.0\n")
    lift = {"preset": "lift", "smoke": False, "seed": 0, **dataclasses.asdict(PRESETS["lift"])}
    (out / "settings.json").write_text(json.dumps(lift))
    check_same_run(out, lift)  # the same run resumes
    default = {**lift, "preset": "default", **dataclasses.asdict(PRESETS["default"])}
    with pytest.raises(UserError, match="other settings .*preset.*n_train"):
        check_same_run(out, default)
    with pytest.raises(UserError, match="seed: 0 there, 1 now"):
        check_same_run(out, {**lift, "seed": 1})
    # an older settings.json without a newer key: that key counts as its default
    older = {k: v for k, v in lift.items() if k != "tokenizer_split_digits"}
    (out / "settings.json").write_text(json.dumps(older))
    check_same_run(out, lift)
    # nothing finished yet: any settings may start over
    (out / ".stages" / "teacher.done").unlink()
    check_same_run(out, default)


def test_demo_resume_with_other_settings_is_one_line_and_runs_nothing(tmp_path):
    out = tmp_path / "d"
    (out / ".stages").mkdir(parents=True)
    (out / ".stages" / "teacher.done").write_text("1.0\n")
    (out / "settings.json").write_text(json.dumps({"preset": "hard", "smoke": True, "seed": 0}))
    cmd = [sys.executable, "-m", "tinygsm_jax.demo", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "other settings (preset" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "teacher").exists()  # stopped before any stage
