"""gs:// workdirs: URLs survive every path operation (pathlib would fold gs://b into gs:/b).

GCS itself is out of reach here, so epath (which orbax and our code use for object stores) is
pointed at a local directory standing in for the bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from etils import epath
from etils.epath import gpath
from etils.epath import testing as epath_testing

from tests.helpers import make_tokenizer
from tinygsm_jax import checkpoint, metrics, train
from tinygsm_jax.cli import as_path, atomic_write_json, local_copy
from tinygsm_jax.model import ModelConfig
from tinygsm_jax.tokenizer import load_tokenizer

URL = "gs://bucket/run"
FNS = (
    "copy exists glob isdir listdir makedirs mkdir open remove rename replace rmtree stat walk"
).split()


@contextlib.contextmanager
def fake_gcs(root: Path):
    """Serve gs://X from root/X through epath's backends; local paths pass through."""

    def to_local(p):
        s = os.fspath(p) if isinstance(p, (str, os.PathLike)) else p
        return s.replace("gs://", f"{root}/", 1) if isinstance(s, str) else p

    def to_url(s: str) -> str:
        return s.replace(f"{root}/", "gs://", 1)

    def wrap(name):
        def fn(_original, path, *args, **kwargs):
            args = [to_local(a) if isinstance(a, (str, os.PathLike)) else a for a in args]
            out = getattr(epath.backend.os_backend, name)(to_local(path), *args, **kwargs)
            if name == "glob":
                return [to_url(x) for x in out]
            if name == "walk":
                return ((to_url(d), dirs, files) for d, dirs, files in out)
            return out

        return fn

    # With TensorFlow installed epath sends gs:// to tf.io.gfile whatever the mock says.
    with (
        mock.patch.object(gpath, "_is_tf_installed", lambda: False),
        epath_testing.mock_epath(**{name: wrap(name) for name in FNS}),
    ):
        yield


def test_urls_are_kept_whole():
    assert str(as_path(URL) / "checkpoints") == "gs://bucket/run/checkpoints"
    assert isinstance(as_path("runs/a"), Path)


def test_train_cli_and_checkpoint_manager_keep_the_url(monkeypatch):
    seen = {}
    monkeypatch.setattr(train, "train", lambda config, workdir: seen.setdefault("workdir", workdir))
    train.main(["--config", "configs/tiny.py", "--workdir", URL])
    assert str(seen["workdir"]) == URL

    class Recorder:
        def __init__(self, directory, options=None):
            seen["checkpoints"] = str(directory)

    monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", Recorder)
    checkpoint.manager(URL)
    assert seen["checkpoints"] == f"{URL}/checkpoints"


def test_model_info_tokenizer_and_metrics_on_gcs(tmp_path, monkeypatch):
    bucket = tmp_path / "gcs"
    (bucket / "bucket").mkdir(parents=True)
    tok_dir = make_tokenizer(tmp_path / "tok")
    cfg = ModelConfig(
        vocab_size=300, d_model=32, n_layers=1, n_heads=2, d_mlp=64, rotary_dim=8, max_len=64
    )
    logdirs = []
    monkeypatch.setattr("tensorboardX.SummaryWriter", lambda logdir: logdirs.append(logdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with fake_gcs(bucket):
        checkpoint.write_model_info(URL, cfg, "generator", tok_dir)
        assert checkpoint.read_model_info(URL)["model"]["d_model"] == 32
        root, step = checkpoint.resolve(URL)
        assert (str(root), step) == (URL, None)

        tok = load_tokenizer(f"{URL}/tokenizer")  # through a local copy
        assert tok.eos_token_id == load_tokenizer(tok_dir).eos_token_id
        assert local_copy(f"{URL}/tokenizer").is_relative_to(tmp_path / "tmp")

        atomic_write_json(f"{URL}/report.json", {"ok": 1})
        for _ in range(2):  # a resumed run appends
            w = metrics.MetricsWriter(URL)
            w.write("step", step=1, loss=2.0)
            w.close()
        assert logdirs == [f"{URL}/tensorboard"] * 2

        with pytest.raises(checkpoint.UserError, match="no such checkpoint"):
            checkpoint.resolve("gs://bucket/missing")

    run = bucket / "bucket" / "run"
    assert json.loads((run / "report.json").read_text()) == {"ok": 1}
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    assert [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [
        2.0,
        2.0,
    ]
    assert not list((tmp_path / "tmp").glob("tinygsm_upload.*"))  # temporaries are removed
