"""launch/*.sh: dry runs, create-or-reuse against a fake gcloud, and a missing gcloud."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
BASH = shutil.which("bash")
SCRIPTS = sorted(LAUNCH.glob("*.sh"))


def run(args, env=None, **kw):
    return subprocess.run(
        [BASH, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, **kw
    )


def commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_scripts_parse_and_have_help():
    assert {p.name for p in SCRIPTS} >= {
        "tpu_train.sh",
        "tpu_setup.sh",
        "tpu_teardown.sh",
        "upload_data.sh",
    }
    for script in SCRIPTS:
        assert run(["-n", script]).returncode == 0, script
        if script.name != "common.sh":
            assert "set -euo pipefail" in script.read_text()
            proc = run([script, "--help"])
            assert proc.returncode == 0 and "usage:" in proc.stdout, script


def test_train_dry_run_prints_every_gcloud_command():
    proc = run(
        [
            LAUNCH / "tpu_train.sh",
            "--zone",
            "us-east5-a",
            "--accelerator-type",
            "v5p-16",
            "--name",
            "pod",
            "--workdir",
            "gs://bucket/phi15",
            "--dry-run",
            "--",
            "--config.data.path=gs://bucket/data",
            "--config.train.init_from=gs://bucket/phi15-base",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout)
    assert cmds[0].startswith("gcloud compute tpus tpu-vm describe pod --zone us-east5-a")
    assert (
        cmds[1]
        == "gcloud compute tpus tpu-vm create pod --zone us-east5-a --accelerator-type v5p-16 --version v2-alpha-tpuv5"
    )
    ssh = [c for c in cmds if c.startswith("gcloud compute tpus tpu-vm ssh pod")]
    assert len(ssh) == 2 and all("--worker=all" in c for c in ssh)
    assert any(
        "scp" in c and "--worker=all" in c for c in cmds
    )  # the checkout goes to every worker
    assert "pip install" in ssh[0] and "[tpu]" in ssh[0]
    train = ssh[1]
    assert (
        "python -m tinygsm_jax.train --config configs/phi1_5.py --workdir gs://bucket/phi15"
        in train
    )
    assert (
        "--config.data.path=gs://bucket/data --config.train.init_from=gs://bucket/phi15-base"
        in train
    )
    assert "tee -a" in train  # streamed here and kept on each worker


def test_queued_spot_dry_run():
    proc = run(
        [
            LAUNCH / "tpu_train.sh",
            "--zone",
            "us-west4-a",
            "--accelerator-type",
            "v5e-32",
            "--queued",
            "--spot",
            "--workdir",
            "gs://b/run",
            "--dry-run",
            "--skip-install",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout)
    create = [c for c in cmds if "queued-resources create" in c]
    assert create == [
        "gcloud compute tpus queued-resources create tinygsm --zone us-west4-a --node-id tinygsm "
        "--accelerator-type v5litepod-32 --runtime-version v2-alpha-tpuv5-lite --spot"
    ]
    assert "--worker=all" in cmds[-1] and "--workdir gs://b/run" in cmds[-1]


@pytest.fixture
def fake_gcloud(tmp_path):
    """A gcloud that logs its arguments and reports the TPU state given in FAKE_TPU_STATE."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gcloud.log"
    script = bin_dir / "gcloud"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        'if [[ "$*" == *describe* ]]; then\n'
        '  [[ -n "${FAKE_TPU_STATE:-}" ]] || exit 1\n'
        '  echo "$FAKE_TPU_STATE"\n'
        "fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return env, log


@pytest.mark.parametrize(
    "state, expect",
    [
        ("READY", ["describe", "ssh"]),
        ("PREEMPTED", ["describe", "delete", "create", "ssh"]),
        ("", ["describe", "create", "ssh"]),
    ],
)
def test_create_reuse_or_recreate_after_preemption(fake_gcloud, state, expect):
    env, log = fake_gcloud
    env["FAKE_TPU_STATE"] = state
    proc = run(
        [LAUNCH / "tpu_train.sh", "--zone", "z", "--workdir", "gs://b/r", "--skip-install"], env=env
    )
    assert proc.returncode == 0, proc.stderr
    verbs = [line.split()[3] for line in log.read_text().splitlines()]
    assert verbs == expect
    assert "--worker=all" in log.read_text().splitlines()[-1]


def test_install_copies_this_checkout_to_every_worker(fake_gcloud):
    env, log = fake_gcloud
    env["FAKE_TPU_STATE"] = "READY"
    proc = run([LAUNCH / "tpu_setup.sh", "--zone", "z"], env=env)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    assert [line.split()[3] for line in lines] == ["describe", "scp", "ssh"]
    assert all("--worker=all" in line for line in lines[1:])


def test_missing_gcloud_says_how_to_install_it(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the tools the script needs, but no gcloud
    bin_dir.mkdir()
    for tool in ("dirname", "git", "tar", "mktemp", "cat", "rm"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = dict(os.environ, PATH=str(bin_dir))
    proc = run([LAUNCH / "tpu_train.sh", "--zone", "z", "--workdir", "gs://b/r"], env=env)
    assert proc.returncode != 0
    assert "gcloud not found" in proc.stderr and "Install the Google Cloud CLI" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "z", "--workdir", "/tmp/run"], "must be a gs:// path"),
        (["--zone", "z"], "--workdir gs://BUCKET/RUN is required"),
        (["--workdir", "gs://b/r"], "--zone is required"),
        (["--zone", "z", "--workdir", "gs://b/r", "--bogus"], "unknown option '--bogus'"),
        (
            ["--zone", "z", "--workdir", "gs://b/r", "--config", "configs/nope.py"],
            "config not found",
        ),
        (
            ["--zone", "z", "--workdir", "gs://b/r", "--accelerator-type", "v9-8"],
            "unknown --accelerator-type",
        ),
    ],
)
def test_bad_options_are_one_clear_line(args, message):
    env = dict(os.environ)
    env.pop("TPU_ZONE", None)
    proc = run([LAUNCH / "tpu_train.sh", *args, "--dry-run"], env=env)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert commands(proc.stdout) == []


# -- tpu_run.sh: any tinygsm_jax command on every worker ---------------------------------------
def test_run_dry_run_runs_the_command_on_every_worker():
    proc = run(
        [
            LAUNCH / "tpu_run.sh",
            "--zone",
            "us-west4-a",
            "--accelerator-type",
            "v5e-16",
            "--dry-run",
            "--",
            "python",
            "-m",
            "tinygsm_jax.verifier_data",
            "--generator",
            "gs://b/gen/1000",
            "gs://b/gen/6000",
            "--questions",
            "gsm8k:gs://b/gsm8k/train.jsonl",
            "--n",
            "48",
            "--out",
            "gs://b/vdata",
        ]  # fmt: skip
    )
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout)
    assert cmds[1] == (
        "gcloud compute tpus tpu-vm create tinygsm --zone us-west4-a --accelerator-type v5litepod-16 "
        "--version v2-alpha-tpuv5-lite"
    )
    ssh = [c for c in cmds if c.startswith("gcloud compute tpus tpu-vm ssh tinygsm")]
    assert len(ssh) == 2 and all("--worker=all" in c for c in ssh)  # install, then the command
    assert "pip install" in ssh[0] and "[tpu]" in ssh[0]
    assert (
        "cd $HOME/tinygsm_jax && $HOME/tinygsm-venv/bin/python -m tinygsm_jax.verifier_data "
        "--generator gs://b/gen/1000 gs://b/gen/6000 --questions gsm8k:gs://b/gsm8k/train.jsonl "
        "--n 48 --out gs://b/vdata 2>&1 | tee -a $HOME/tinygsm_run.log" in ssh[1]
    )


def test_run_keeps_arguments_with_spaces_and_quotes_through_ssh(fake_gcloud, tmp_path):
    """The remote command the fake gcloud receives, run by a shell, gives back every argument."""
    env, log = fake_gcloud
    env["FAKE_TPU_STATE"] = "READY"
    prompt = 'it\'s a "test" with $HOME'
    proc = run(
        [
            LAUNCH / "tpu_run.sh",
            "--zone",
            "z",
            "--skip-install",
            "--",
            "python",
            "-m",
            "tinygsm_jax.sample",
            "--checkpoint",
            "gs://b/g",
            "--prompt",
            prompt,
        ],  # fmt: skip
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    ssh = log.read_text().splitlines()[-1]
    assert ssh.split()[3] == "ssh" and "--worker=all" in ssh
    remote = ssh.split("--command ", 1)[1]
    # What the worker's shell would pass to python: replace the interpreter with printf.
    remote = (
        remote.split("&& ", 1)[1]
        .split(" 2>&1")[0]
        .replace("$HOME/tinygsm-venv/bin/python", "printf '%s\\n'")
    )
    out = subprocess.run([BASH, "-c", remote], capture_output=True, text=True).stdout.splitlines()
    assert out == ["-m", "tinygsm_jax.sample", "--checkpoint", "gs://b/g", "--prompt", prompt]


@pytest.mark.parametrize(
    "cmd, message",
    [
        ([], "give the command after --"),
        (["ls", "-l", "/"], "must be 'python -m tinygsm_jax.MODULE"),
        (["python", "-m", "tinygsm_jax.nope"], "no module tinygsm_jax.nope"),
        (["python", "-m", "tinygsm_jax.eval", "--out", "/tmp/eval"], "--out must be a gs:// path"),
        (
            ["python", "-m", "tinygsm_jax.train", "--workdir=runs/x"],
            "--workdir must be a gs:// path",
        ),
    ],
)
def test_run_bad_commands_are_one_clear_line(cmd, message):
    proc = run([LAUNCH / "tpu_run.sh", "--zone", "z", "--dry-run", "--", *cmd])
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert commands(proc.stdout) == []


RUN_SH = ["tpu_run.sh", "--", "python", "-m", "tinygsm_jax.eval", "--out", "gs://b/e"]
TRAIN_SH = ["tpu_train.sh", "--workdir", "gs://b/run"]


@pytest.mark.parametrize(
    "argv, log", [(RUN_SH, "$HOME/tinygsm_run.log"), (TRAIN_SH, "$HOME/tinygsm_train.log")]
)
def test_follow_and_detach_share_one_path_in_both_scripts(argv, log):
    """--follow only tails worker 0's log; --detach starts the job under nohup and says how to
    follow it; both scripts go through launch/common.sh's run_on_workers."""
    script, *rest = argv
    opts = ["--zone", "z", "--name", "pod", "--dry-run", "--skip-install"]
    follow = run([LAUNCH / script, *opts, "--follow", *rest])
    assert follow.returncode == 0, follow.stderr
    assert commands(follow.stdout) == [
        f"gcloud compute tpus tpu-vm ssh pod --zone z --worker=0 --command 'tail -n 100 -F {log}'"
    ]
    detach = run([LAUNCH / script, *opts, "--detach", *rest])
    assert detach.returncode == 0, detach.stderr
    ssh = [c for c in commands(detach.stdout) if " ssh pod " in c]
    assert len(ssh) == 1 and "--worker=all" in ssh[0] and "nohup bash -c" in ssh[0]
    assert f">> {log} 2>&1" in ssh[0]
    assert "started in the background; follow with:" in detach.stderr
    assert "--name pod --zone z" in detach.stderr and detach.stderr.rstrip().endswith("--follow")
