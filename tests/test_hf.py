"""Hugging Face round trips (Levanter style): tiny random Phi models made by transformers with odd
sizes are imported, compared logit for logit, exported, reloaded by transformers, compared again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import make_tokenizer

from tinygsm_jax import export, import_hf
from tinygsm_jax.checkpoint import load_model
from tinygsm_jax.cli import run_main
from tinygsm_jax.hf import hf_shapes, import_hf_dir, parse_size
from tinygsm_jax.model import ModelConfig, Phi, count_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
TOK_SIZE = 300  # the tokenizer's size; the models' vocabulary is padded past it
# 6 heads of 16, rotary on half of each head, MLP 200, vocabulary 320 > 300 tokens.
SHAPE = dict(
    vocab_size=320, hidden_size=96, num_hidden_layers=2, num_attention_heads=6, intermediate_size=200,
    max_position_embeddings=64, layer_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
)  # fmt: skip
TOL = 1e-4


def _randomize(model, seed: int):
    """Perturb every parameter (biases and LayerNorms too) so that no mapping slip hides behind 0/1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _hf_model(kind: str, seed: int = 0):
    cfg = transformers.PhiConfig(**SHAPE, **({"num_labels": 1} if kind == "value" else {}))
    cls = transformers.PhiForCausalLM if kind == "lm" else transformers.PhiForTokenClassification
    torch.manual_seed(seed)
    return _randomize(cls(cfg), seed)


def _hf_out(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor(tokens)).logits.float().numpy()
    return out if out.shape[-1] != 1 or "Causal" in type(model).__name__ else out[..., 0]


def _ours(cfg: ModelConfig, params: dict) -> Phi:
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    return nnx.merge(graphdef, state)


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    """Run a CLI main as `python -m` would; returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    return e.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return np.random.RandomState(0).randint(0, SHAPE["vocab_size"], size=(2, 21))


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok"), vocab_size=TOK_SIZE)


@pytest.fixture(scope="module", params=["lm", "value"])
def hf_dir(request, tmp_path_factory, tok_dir):
    """(directory, model): a random HF generator or verifier saved with save_pretrained + tokenizer."""
    model = _hf_model(request.param)
    out = tmp_path_factory.mktemp(f"hf_{request.param}")
    model.save_pretrained(str(out))
    for f in tok_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out, model


def test_tokenizer_is_smaller_than_vocab(tok_dir):
    tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
    assert len(tok) <= TOK_SIZE < SHAPE["vocab_size"]


def test_import_matches_hf(hf_dir, tokens):
    path, model = hf_dir
    assert (path / "model.safetensors").is_file()
    cfg, params = import_hf_dir(path)
    head = "lm" if isinstance(model, transformers.PhiForCausalLM) else "value"
    assert (cfg.head, cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.rotary_dim, cfg.d_mlp, cfg.vocab_size) == (
        head, 96, 6, 16, 8, 200, 320,
    )  # fmt: skip
    assert params["blocks"]["q_kernel"].shape == (2, 96, 6, 16)
    ours = np.asarray(_ours(cfg, params)(jnp.asarray(tokens)))
    ref = _hf_out(model, tokens)
    assert ours.shape == ref.shape == ((2, 21, 320) if head == "lm" else (2, 21))
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_cli_round_trip(hf_dir, tokens, tmp_path, capsys):
    """HF -> import_hf -> checkpoint -> export -> HF: transformers' logits equal the original's."""
    path, model = hf_dir
    ckpt, out = tmp_path / "ckpt", tmp_path / "exported"
    assert _run(import_hf.main, ["--hf-dir", str(path), "--out", str(ckpt)], capsys)[0] == 0
    loaded = load_model(ckpt)
    ref = _hf_out(model, tokens)
    np.testing.assert_allclose(np.asarray(loaded.model(jnp.asarray(tokens))), ref, atol=TOL, rtol=0)
    assert (
        transformers.AutoTokenizer.from_pretrained(str(loaded.tokenizer_dir)).eos_token
        == "<|endoftext|>"
    )

    assert _run(export.main, ["--checkpoint", str(ckpt), "--out", str(out)], capsys)[0] == 0
    is_lm = isinstance(model, transformers.PhiForCausalLM)
    auto = (
        transformers.AutoModelForCausalLM if is_lm else transformers.AutoModelForTokenClassification
    )
    back = auto.from_pretrained(str(out)).eval()
    assert type(back) is type(model)
    np.testing.assert_allclose(_hf_out(back, tokens), ref, atol=TOL, rtol=0)
    # Same weights exactly (float32 all the way), no missing or extra tensors.
    sd, sd0 = back.state_dict(), model.state_dict()
    assert sd.keys() == sd0.keys()
    assert all(torch.equal(sd[k], sd0[k]) for k in sd)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [type(model).__name__]
    assert config["eos_token_id"] == tok.eos_token_id
    if is_lm:
        gen = json.loads((out / "generation_config.json").read_text())
        assert gen["eos_token_id"] == gen["pad_token_id"] == tok.eos_token_id
    else:
        assert back.config.num_labels == 1
        assert not (out / "generation_config.json").exists()


def test_sharded_import_and_export(tok_dir, tokens, tmp_path, capsys):
    model = _hf_model("lm", seed=1)
    src = tmp_path / "hf"
    model.save_pretrained(str(src), max_shard_size="100KB")
    for f in tok_dir.iterdir():
        shutil.copy(f, src / f.name)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    cfg, params = import_hf_dir(src)
    ref = _hf_out(model, tokens)
    np.testing.assert_allclose(
        np.asarray(_ours(cfg, params)(jnp.asarray(tokens))), ref, atol=TOL, rtol=0
    )

    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    assert _run(import_hf.main, ["--hf-dir", str(src), "--out", str(ckpt)], capsys)[0] == 0
    argv = ["--checkpoint", str(ckpt), "--out", str(out), "--shard-size", "150KB"]
    assert _run(export.main, argv, capsys)[0] == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((out / f).is_file() for f in files)
    assert not (out / "model.safetensors").exists()
    assert all((out / f).stat().st_size <= 150_000 + 10_000 for f in files)  # + header
    assert set(index["weight_map"]) == set(hf_shapes(cfg))
    back = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    np.testing.assert_allclose(_hf_out(back, tokens), ref, atol=TOL, rtol=0)


def test_bfloat16_export(hf_dir, tmp_path, capsys):
    path, model = hf_dir
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    assert _run(import_hf.main, ["--hf-dir", str(path), "--out", str(ckpt)], capsys)[0] == 0
    assert (
        _run(
            export.main,
            ["--checkpoint", str(ckpt), "--out", str(out), "--dtype", "bfloat16"],
            capsys,
        )[0]
        == 0
    )
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    auto = (
        transformers.AutoModelForCausalLM
        if isinstance(model, transformers.PhiForCausalLM)
        else transformers.AutoModelForTokenClassification
    )
    back = auto.from_pretrained(str(out), dtype=torch.bfloat16)
    sd0 = model.state_dict()
    for k, v in back.state_dict().items():
        assert v.dtype == torch.bfloat16
        assert torch.equal(v, sd0[k].to(torch.bfloat16)), k


@pytest.mark.parametrize("layout", ["phi-msft", "mixformer-sequential"])
def test_old_phi_layouts(layout, tok_dir, tokens, tmp_path):
    """The pre-transformers Phi-1.5 layouts (fused Wqkv, other names) import to the same model."""
    from safetensors.numpy import save_file

    model = _hf_model("lm", seed=2)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    L = SHAPE["num_hidden_layers"]
    if layout == "phi-msft":
        top = {"embed": "transformer.embd.wte", "final": "lm_head.ln", "head": "lm_head.linear"}
        layer = "transformer.h.{}"
    else:
        top = {
            "embed": "layers.0.wte",
            "final": f"layers.{L + 1}.ln",
            "head": f"layers.{L + 1}.linear",
        }
        layer = "layers.{}"
    old = {f"{top['embed']}.weight": sd["model.embed_tokens.weight"]}
    for p in ("weight", "bias"):
        old[f"{top['final']}.{p}"] = sd[f"model.final_layernorm.{p}"]
        old[f"{top['head']}.{p}"] = sd[f"lm_head.{p}"]
        for i in range(L):
            n, new = layer.format(i + (layout != "phi-msft")), f"model.layers.{i}"
            old[f"{n}.ln.{p}"] = sd[f"{new}.input_layernorm.{p}"]
            old[f"{n}.mixer.Wqkv.{p}"] = np.concatenate(
                [sd[f"{new}.self_attn.{x}_proj.{p}"] for x in "qkv"]
            )
            old[f"{n}.mixer.out_proj.{p}"] = sd[f"{new}.self_attn.dense.{p}"]
            for fc in ("fc1", "fc2"):
                old[f"{n}.mlp.{fc}.{p}"] = sd[f"{new}.mlp.{fc}.{p}"]
    old[f"{layer.format(1 if layout != 'phi-msft' else 0)}.mixer.rotary_emb.inv_freq"] = np.ones(
        4, np.float32
    )
    config = {
        "model_type": layout, "architectures": ["PhiForCausalLM"], "vocab_size": 320, "n_embd": 96,
        "n_layer": L, "n_head": 6, "n_inner": 200, "rotary_dim": 8, "n_positions": 64,
        "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(old, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    cfg, params = import_hf_dir(tmp_path)
    ref = _hf_out(model, tokens)
    np.testing.assert_allclose(
        np.asarray(_ours(cfg, params)(jnp.asarray(tokens))), ref, atol=TOL, rtol=0
    )


@pytest.mark.parametrize(
    "config_name, hf_kwargs, cls",
    [
        ("phi1_5", {}, "PhiForCausalLM"),
        ("phi1_5_verifier", {"num_labels": 1}, "PhiForTokenClassification"),
        (
            "phi2",
            dict(
                hidden_size=2560,
                num_hidden_layers=32,
                intermediate_size=10240,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "partial_rotary_factor": 0.4,
                },
            ),
            "PhiForCausalLM",
        ),  # fmt: skip
    ],
)
def test_param_count_matches_transformers(config_name, hf_kwargs, cls):
    """Our configs' parameter counts equal transformers' models', counted on the meta device."""
    from tinygsm_jax.config import load_config_file

    with torch.device("meta"):
        hf = getattr(transformers, cls)(transformers.PhiConfig(**hf_kwargs))
    expected = sum(p.numel() for p in hf.parameters())
    cfg = ModelConfig.from_config(load_config_file(config_name).model)
    assert count_params(cfg) == expected
    if config_name == "phi1_5":
        assert expected == 1_418_270_720


def test_hf_config_maps_back(hf_dir, tmp_path, capsys):
    """Our export's config.json imports to the same ModelConfig (config mapping both ways)."""
    path, _ = hf_dir
    cfg, _ = import_hf_dir(path)
    assert (
        _run(import_hf.main, ["--hf-dir", str(path), "--out", str(tmp_path / "c")], capsys)[0] == 0
    )
    assert (
        _run(
            export.main, ["--checkpoint", str(tmp_path / "c"), "--out", str(tmp_path / "o")], capsys
        )[0]
        == 0
    )
    cfg2, _ = import_hf_dir(tmp_path / "o")
    assert cfg2 == cfg


# config.json of microsoft/phi-1_5 and microsoft/phi-2 as transformers 4.37 wrote them (RoPE keys
# at the top level, as on the Hub), which must map onto configs/phi1_5.py and configs/phi2.py.
PHI_HUB_CONFIG = {
    "architectures": ["PhiForCausalLM"], "attention_dropout": 0.0, "embd_pdrop": 0.0,
    "hidden_act": "gelu_new", "initializer_range": 0.02, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048, "model_type": "phi", "num_attention_heads": 32,
    "qk_layernorm": False, "rope_scaling": None, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.37.0",
    "use_cache": True, "vocab_size": 51200,
}  # fmt: skip
HUB_CONFIGS = {
    "phi1_5": {
        **PHI_HUB_CONFIG, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
        "num_key_value_heads": None, "partial_rotary_factor": 0.5, "resid_pdrop": 0.0,
        "bos_token_id": None, "eos_token_id": None,
    },
    "phi2": {
        **PHI_HUB_CONFIG, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 32,
        "num_key_value_heads": 32, "partial_rotary_factor": 0.4, "resid_pdrop": 0.1,
        "bos_token_id": 50256, "eos_token_id": 50256,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HUB_CONFIGS))
def test_hub_configs_map_to_our_configs(name):
    from tinygsm_jax.config import load_config_file
    from tinygsm_jax.hf import config_from_hf, make_phi_config

    # dtype, remat and scan_unroll say how a program runs, not which model: set as import does
    ours = ModelConfig.from_config(
        load_config_file(name).model, dtype="float32", remat=False, scan_unroll=1
    )
    assert config_from_hf(HUB_CONFIGS[name], "lm") == ours
    # And back: the config.json we would export describes the same model.
    exported = json.loads(make_phi_config(ours).to_json_string())
    assert config_from_hf(exported, "lm") == ours


def test_export_of_a_step_directory(ckpt, tmp_path, capsys):
    step_dir = ckpt / "checkpoints" / "0"
    assert step_dir.is_dir()
    assert (
        _run(export.main, ["--checkpoint", str(step_dir), "--out", str(tmp_path / "o")], capsys)[0]
        == 0
    )
    assert (tmp_path / "o" / "model.safetensors").is_file()


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("500MB") == 500_000_000
    assert parse_size("1KiB") == 1024
    assert parse_size("123") == 123


# ------------------------------------------------------------------------------ bad input


def _hf_copy(hf_dir, tmp_path: Path) -> Path:
    """A writable copy of the (generator or verifier) HF directory."""
    dst = tmp_path / "hf"
    shutil.copytree(hf_dir[0], dst)
    return dst


def _edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


IMPORT_CASES = {
    "no weights": (lambda d: [f.unlink() for f in d.glob("*.safetensors")], "no weights"),
    "not phi": (lambda d: _edit_config(d, model_type="llama"), "not a Phi model"),
    "weights do not match config": (lambda d: _edit_config(d, intermediate_size=100), "config.json implies"),
    "missing tokenizer": (lambda d: [(d / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")], "--tokenizer"),
    "grouped-query attention": (lambda d: _edit_config(d, num_key_value_heads=3), "not supported"),
    "qk layernorm": (lambda d: _edit_config(d, qk_layernorm=True), "not supported"),
    "other activation": (lambda d: _edit_config(d, hidden_act="relu"), "gelu_new"),
    "scaled rope": (lambda d: _edit_config(d, rope_parameters={"rope_type": "linear", "factor": 2.0}), "not supported"),
    "two labels": (lambda d: _edit_config(d, architectures=["PhiForTokenClassification"], id2label={"0": "a", "1": "b"}), "num_labels=1"),
    "no config": (lambda d: (d / "config.json").unlink(), "no config.json"),
    "broken config": (lambda d: (d / "config.json").write_text("{"), "not valid JSON"),
    "sequence classification": (lambda d: _edit_config(d, architectures=["PhiForSequenceClassification"]), "not supported"),
    "missing shard": (lambda d: (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}})), "missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(IMPORT_CASES))
def test_import_bad_input(case, hf_dir, tmp_path, capsys):
    path = _hf_copy(hf_dir, tmp_path)
    spoil, message = IMPORT_CASES[case]
    spoil(path)
    out = tmp_path / "ckpt"
    code, err = _run(import_hf.main, ["--hf-dir", str(path), "--out", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary left behind either


def test_refuses_to_overwrite_unless_asked(hf_dir, tmp_path, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--hf-dir", str(hf_dir[0]), "--out", str(out)]
    code, err = _run(import_hf.main, argv, capsys)
    assert code == 2 and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _run(import_hf.main, [*argv, "--overwrite", "--dtype", "bfloat16"], capsys)[0] == 0
    assert not (out / "keep.txt").exists()
    assert json.loads((out / "model.json").read_text())["model"]["dtype"] == "bfloat16"

    hf_out = tmp_path / "hf_out"
    hf_out.mkdir()
    (hf_out / "keep.txt").write_text("mine")
    argv = ["--checkpoint", str(out), "--out", str(hf_out)]
    code, err = _run(export.main, argv, capsys)
    assert code == 2 and "--overwrite" in err
    assert [p.name for p in hf_out.iterdir()] == ["keep.txt"]
    assert _run(export.main, [*argv, "--overwrite"], capsys)[0] == 0
    assert (hf_out / "config.json").is_file() and not (hf_out / "keep.txt").exists()


def test_import_pytorch_bin(tokens, tmp_path):
    """Old checkpoints ship pytorch_model.bin only: read with torch when it is installed."""
    model = _hf_model("lm", seed=3)
    model.save_pretrained(str(tmp_path))
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    cfg, params = import_hf_dir(tmp_path)
    ours = np.asarray(_ours(cfg, params)(jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_out(model, tokens), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, hf_dir):
    out = tmp_path_factory.mktemp("ck") / "ckpt"
    with pytest.raises(SystemExit) as e:
        run_main(import_hf.main, ["--hf-dir", str(hf_dir[0]), "--out", str(out)])
    assert e.value.code == 0
    return out


def _shape_mismatch(c: Path) -> None:
    info = json.loads((c / "model.json").read_text())
    info["model"]["d_mlp"] = 100
    (c / "model.json").write_text(json.dumps(info))


def _wrong_head(c: Path) -> None:
    info = json.loads((c / "model.json").read_text())
    info["model"]["head"] = {"lm": "value", "value": "lm"}[info["model"]["head"]]
    (c / "model.json").write_text(json.dumps(info))


EXPORT_CASES = {
    "checkpoint of another shape": (_shape_mismatch, "model.json implies"),
    "checkpoint of another head": (_wrong_head, "cannot be restored"),
    "missing tokenizer": (lambda c: shutil.rmtree(c / "tokenizer"), "tokenizer"),
    "not a checkpoint": (lambda c: (c / "model.json").unlink(), "not a tinygsm_jax checkpoint"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_export_bad_input(case, ckpt, tmp_path, capsys):
    bad = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad)
    spoil, message = EXPORT_CASES[case]
    spoil(bad)
    out = tmp_path / "out"
    code, err = _run(export.main, ["--checkpoint", str(bad), "--out", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_cli_subprocess_bad_input(tmp_path):
    """The real `python -m` entry point: one line on stderr, exit 2, no traceback."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    proc = subprocess.run(
        [sys.executable, "-m", "tinygsm_jax.import_hf", "--hf-dir", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not a Phi model" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_export_of_a_joint_objective_verifier(tok_dir, tokens, tmp_path, capsys):
    """A verifier trained with the LM loss keeps an LM head; it exports as the same
    PhiForTokenClassification (the LM head stays behind), with scores equal to ours."""
    from test_sampler import random_model

    from tinygsm_jax.checkpoint import save_model

    model = random_model("value", 5, keep_lm_head=True)
    assert hasattr(model, "lm_head_kernel") and hasattr(model, "value_kernel")
    save_model(tmp_path / "joint", model, tok_dir)
    code, _ = _run(
        export.main,
        ["--checkpoint", str(tmp_path / "joint"), "--out", str(tmp_path / "hf")],
        capsys,
    )
    assert code == 0
    hf = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path / "hf"))
    assert type(hf).__name__ == "PhiForTokenClassification" and hf.config.num_labels == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "np") as f:
        assert not any(k.startswith("lm_head") for k in f.keys())
    ours = np.asarray(model(jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_out(hf, tokens), atol=TOL, rtol=0)


def test_export_of_a_dropout_verifier(tok_dir, tokens, tmp_path, capsys):
    """A verifier trained with model.dropout exports the same weights and scores (HF in eval
    mode, as we score without dropout); config.json records the rate as resid_pdrop and
    embd_pdrop, and importing it back gives a model that runs without dropout (rate 0)."""
    from test_sampler import random_model

    from tinygsm_jax.checkpoint import save_model

    model = random_model("value", 6, dropout=0.2)
    save_model(tmp_path / "drop", model, tok_dir)
    code, _ = _run(
        export.main, ["--checkpoint", str(tmp_path / "drop"), "--out", str(tmp_path / "hf")], capsys
    )
    assert code == 0
    hc = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hc["resid_pdrop"] == pytest.approx(0.2) and hc["embd_pdrop"] == pytest.approx(0.2)
    hf = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path / "hf"))
    assert not hf.training
    ours = np.asarray(model(jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_out(hf, tokens), atol=TOL, rtol=0)
    cfg, params = import_hf_dir(tmp_path / "hf")
    assert cfg == model.cfg.replace(dropout=0.0, scan_unroll=cfg.scan_unroll)
    np.testing.assert_array_equal(
        params["blocks"]["q_kernel"], np.asarray(model.blocks.q_kernel.value)
    )
