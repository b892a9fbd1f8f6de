"""Hugging Face interop: Phi safetensors and `config.json` <-> our stacked parameters and ModelConfig.

Import reads an HF `PhiForCausalLM` (a generator) or `PhiForTokenClassification` with one label
(a verifier) straight from its safetensors files with numpy, one tensor at a time, so neither
torch nor a second copy of the model is needed: each HF tensor is transposed/reshaped into its
layer's slice of our stacked `[layers, ...]` arrays. Export is the inverse and writes files that
`AutoModelForCausalLM` / `AutoModelForTokenClassification` load with no code of ours; the
`config.json` is written by transformers' own `PhiConfig`, so it is exactly what the installed
transformers expects.

Name mapping (per layer N, HF `nn.Linear` weights are [out, in]; ours are [in, ...out]):

    model.embed_tokens.weight [V,D]                  embed [V,D]
    model.layers.N.input_layernorm.{weight,bias}     blocks.ln_{scale,bias}[N]
    model.layers.N.self_attn.{q,k,v}_proj.weight     blocks.{q,k,v}_kernel[N] [D,H,K]  (W.T)
    model.layers.N.self_attn.{q,k,v}_proj.bias       blocks.{q,k,v}_bias[N] [H,K]
    model.layers.N.self_attn.dense.{weight,bias}     blocks.o_kernel[N] [H,K,D] (W.T), o_bias
    model.layers.N.mlp.fc{1,2}.{weight,bias}         blocks.fc{1,2}_kernel[N] (W.T), fc{1,2}_bias
    model.final_layernorm.{weight,bias}              final_ln_{scale,bias}
    lm_head.{weight,bias} [V,D], [V]                 lm_head_kernel [D,V] (W.T), lm_head_bias
    score.{weight,bias} [1,D], [1]                   value_kernel [D], value_bias []
      (transformers < 4.50 named the token-classification head `classifier`; both import)

The pre-`transformers` Phi-1.5/Phi-2 layouts (`model_type` "phi-msft": transformer.h.N.mixer.Wqkv;
"mixformer-sequential": layers.N.mixer.Wqkv) are renamed to this layout on the fly, the fused
Wqkv split into q, k, v; `pytorch_model.bin` files are read with torch when it is installed.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tinygsm_jax.cli import UserError, atomic_path
from tinygsm_jax.model import ModelConfig

ARCHITECTURES = {"lm": "PhiForCausalLM", "value": "PhiForTokenClassification"}
OLD_MODEL_TYPES = ("phi-msft", "mixformer-sequential")
VALUE_HEAD_NAMES = ("score", "classifier")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "added_tokens.json", "tokenizer.model", "chat_template.jinja",
)  # fmt: skip
_IGNORED = re.compile(r".*(rotary_emb\.inv_freq|\.attn\.masked_bias|\.attn\.bias)$")


# ----------------------------------------------------------------------------------- config


def _rope(hc: dict, head_dim: int, where: str) -> tuple[float, int]:
    """(rope_theta, rotary_dim) from either transformers 5's `rope_parameters`, 4.x's top level,
    or `rope_scaling` (which must be absent or the default type: scaled RoPE is not implemented)."""
    params = dict(hc.get("rope_parameters") or {})
    scaling = hc.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type")) or scaling.get(
        "rope_type", scaling.get("type")
    )
    if rope_type not in (None, "default"):
        raise UserError(
            f"{where}: RoPE type {rope_type!r} is not supported (only the default rotary embedding)"
        )
    theta = params.get("rope_theta", hc.get("rope_theta", 10000.0))
    factor = params.get("partial_rotary_factor", hc.get("partial_rotary_factor", 0.5))
    return float(theta), int(head_dim * factor)


def _msft_to_phi_config(hc: dict) -> dict:
    """The pre-transformers Phi config (n_embd, n_layer, ...) in PhiConfig's names."""
    d = hc.get("n_embd", 2048)
    n_head = hc.get("n_head", 32)
    if hc.get("n_head_kv") not in (None, n_head):
        raise UserError(
            "config.json: n_head_kv != n_head (grouped-query attention) is not supported"
        )
    return {
        "model_type": "phi",
        "architectures": ["PhiForCausalLM"],
        "vocab_size": hc.get("vocab_size", 50304),
        "hidden_size": d,
        "num_hidden_layers": hc.get("n_layer", 24),
        "num_attention_heads": n_head,
        "intermediate_size": hc.get("n_inner") or 4 * d,
        "partial_rotary_factor": hc.get("rotary_dim", 32) / (d // n_head),
        "max_position_embeddings": hc.get("n_positions", 2048),
        "layer_norm_eps": hc.get("layer_norm_epsilon", 1e-5),
        "hidden_act": hc.get("activation_function", "gelu_new"),
        "tie_word_embeddings": False,
    }


def config_from_hf(
    hc: dict, head: str, *, where: str = "config.json", dtype: str = "float32"
) -> ModelConfig:
    """Our ModelConfig for an HF Phi `config.json` dict; UserError for what we cannot represent."""
    if hc.get("model_type") in OLD_MODEL_TYPES:
        hc = _msft_to_phi_config(hc)
    if hc.get("model_type") != "phi":
        raise UserError(
            f"{where}: model_type {hc.get('model_type')!r} is not a Phi model (supported: phi, {', '.join(OLD_MODEL_TYPES)})"
        )
    try:
        d, n_heads = int(hc.get("hidden_size", 2048)), int(hc.get("num_attention_heads", 32))
        head_dim = d // n_heads
        if hc.get("head_dim") not in (None, head_dim):
            raise UserError(
                f"{where}: head_dim {hc['head_dim']} != hidden_size / num_attention_heads is not supported"
            )
        if hc.get("num_key_value_heads") not in (None, n_heads):
            raise UserError(
                f"{where}: num_key_value_heads {hc['num_key_value_heads']} != num_attention_heads {n_heads} "
                "(grouped-query attention) is not supported"
            )
        if hc.get("qk_layernorm", False):
            raise UserError(f"{where}: qk_layernorm=true is not supported")
        if hc.get("hidden_act", "gelu_new") != "gelu_new":
            raise UserError(
                f"{where}: hidden_act {hc['hidden_act']!r} is not supported (only gelu_new)"
            )
        theta, rotary_dim = _rope(hc, head_dim, where)
        # resid_pdrop/embd_pdrop are not read: dropout is a training choice that the training
        # config makes (model.dropout), and an imported model scores and samples without it.
        return ModelConfig(
            vocab_size=int(hc.get("vocab_size", 51200)),
            d_model=d,
            n_layers=int(hc.get("num_hidden_layers", 24)),
            n_heads=n_heads,
            d_mlp=int(hc.get("intermediate_size") or 8192),
            rotary_dim=rotary_dim,
            max_len=int(hc.get("max_position_embeddings", 2048)),
            head=head,
            layer_norm_eps=float(hc.get("layer_norm_eps", 1e-5)),
            rope_theta=theta,
            dtype=dtype,
        )
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: unsupported or invalid Phi config ({e})") from None


def head_from_hf(hc: dict, names: set[str], where: str = "config.json") -> str:
    """The head: `lm` for a causal LM, `value` for token classification with one label (from
    `architectures`, else from which head weights exist)."""
    archs = hc.get("architectures") or []
    if hc.get("model_type") in OLD_MODEL_TYPES:
        return "lm"
    if "PhiForCausalLM" in archs:
        return "lm"
    if "PhiForTokenClassification" in archs:
        n = len(hc["id2label"]) if hc.get("id2label") else int(hc.get("num_labels", 2))
        if n != 1:
            raise UserError(
                f"{where}: PhiForTokenClassification with {n} labels; only num_labels=1 (a verifier) is supported"
            )
        return "value"
    if archs:
        raise UserError(
            f"{where}: architecture {archs[0]!r} is not supported (PhiForCausalLM or PhiForTokenClassification)"
        )
    if "lm_head.weight" in names:
        return "lm"
    if any(f"{h}.weight" in names for h in VALUE_HEAD_NAMES):
        return "value"
    raise UserError(
        f"{where}: no `architectures` and no lm_head/score weights: cannot tell the model's head"
    )


def hf_config_kwargs(cfg: ModelConfig, *, eos_token_id: int | None = None, bos_token_id: int | None = None,
                     pad_token_id: int | None = None, dtype: str = "float32") -> dict:  # fmt: skip
    """Keyword arguments for transformers' `PhiConfig` describing `cfg` (export)."""
    factor = cfg.rotary_dim / cfg.head_dim
    while int(cfg.head_dim * factor) < cfg.rotary_dim:  # HF truncates head_dim * factor with int()
        factor = math.nextafter(factor, math.inf)
    kw = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        hidden_act="gelu_new",
        max_position_embeddings=cfg.max_len,
        layer_norm_eps=cfg.layer_norm_eps,
        qk_layernorm=False,
        tie_word_embeddings=False,
        # Training dropout, recorded as Phi's; it never changes the weights or an eval forward.
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attention_dropout=0.0,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        architectures=[ARCHITECTURES[cfg.head]],
        dtype=dtype,
    )
    kw["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": cfg.rope_theta,
        "partial_rotary_factor": factor,
    }
    if cfg.head == "value":
        kw.update(
            num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0}, classifier_dropout=0.0
        )
    return kw


def make_phi_config(cfg: ModelConfig, **kw: Any):
    """transformers' `PhiConfig` for `cfg` (transformers 4.x keeps the RoPE keys at the top level)."""
    import transformers

    kwargs = hf_config_kwargs(cfg, **kw)
    if int(transformers.__version__.split(".")[0]) < 5:
        kwargs.update(kwargs.pop("rope_parameters"))
        kwargs.pop("rope_type")
        kwargs["torch_dtype"] = kwargs.pop("dtype")
    return transformers.PhiConfig(**kwargs)


# ---------------------------------------------------------------------------------- weights


# (HF name under model.layers.N., our key under blocks, HF shape, to ours, to HF). D/H/K/M from cfg.
def _layer_table(cfg: ModelConfig) -> list[tuple[str, str, tuple, Callable, Callable]]:
    D, H, K, M = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_mlp
    same = (lambda w: w, lambda w: w)
    table = [
        ("input_layernorm.weight", "ln_scale", (D,), *same),
        ("input_layernorm.bias", "ln_bias", (D,), *same),
    ]
    for n in ("q", "k", "v"):
        table += [
            (f"self_attn.{n}_proj.weight", f"{n}_kernel", (H * K, D), lambda w: w.T.reshape(D, H, K), lambda w: w.reshape(D, H * K).T),
            (f"self_attn.{n}_proj.bias", f"{n}_bias", (H * K,), lambda w: w.reshape(H, K), lambda w: w.reshape(H * K)),
        ]  # fmt: skip
    table += [
        ("self_attn.dense.weight", "o_kernel", (D, H * K), lambda w: w.T.reshape(H, K, D), lambda w: w.reshape(H * K, D).T),
        ("self_attn.dense.bias", "o_bias", (D,), *same),
        ("mlp.fc1.weight", "fc1_kernel", (M, D), lambda w: w.T, lambda w: w.T),
        ("mlp.fc1.bias", "fc1_bias", (M,), *same),
        ("mlp.fc2.weight", "fc2_kernel", (D, M), lambda w: w.T, lambda w: w.T),
        ("mlp.fc2.bias", "fc2_bias", (D,), *same),
    ]  # fmt: skip
    return table


def _top_table(
    cfg: ModelConfig, value_head: str = "score"
) -> list[tuple[str, str, tuple, Callable, Callable]]:
    D, V = cfg.d_model, cfg.vocab_size
    same = (lambda w: w, lambda w: w)
    table = [
        ("model.embed_tokens.weight", "embed", (V, D), *same),
        ("model.final_layernorm.weight", "final_ln_scale", (D,), *same),
        ("model.final_layernorm.bias", "final_ln_bias", (D,), *same),
    ]
    if cfg.head == "lm":
        table += [
            ("lm_head.weight", "lm_head_kernel", (V, D), lambda w: w.T, lambda w: w.T),
            ("lm_head.bias", "lm_head_bias", (V,), *same),
        ]
    else:
        table += [
            (f"{value_head}.weight", "value_kernel", (1, D), lambda w: w[0], lambda w: w[None]),
            (
                f"{value_head}.bias",
                "value_bias",
                (1,),
                lambda w: w.reshape(()),
                lambda w: w.reshape(1),
            ),
        ]
    return table


def hf_shapes(cfg: ModelConfig, value_head: str = "score") -> dict[str, tuple[int, ...]]:
    """Every HF tensor name of a model of shape `cfg`, with its shape."""
    out = {name: shape for name, _, shape, _, _ in _top_table(cfg, value_head)}
    for i in range(cfg.n_layers):
        out.update(
            {f"model.layers.{i}.{name}": shape for name, _, shape, _, _ in _layer_table(cfg)}
        )
    return out


def hf_to_params(
    cfg: ModelConfig, get: Callable[[str], np.ndarray], names: set[str], *, where: str = ""
) -> dict:
    """Our pure-dict float32 params from HF tensors (`get(name)`); UserError on a missing/misshapen one."""
    value_head = next((h for h in VALUE_HEAD_NAMES if f"{h}.weight" in names), "score")
    if cfg.head == "lm" and "lm_head.weight" not in names and "model.embed_tokens.weight" in names:
        raise UserError(
            f"{where}: has no lm_head.weight (tied embeddings are not supported by Phi)"
        )
    expected = hf_shapes(cfg, value_head)
    missing = [n for n in expected if n not in names]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(
            f"{where}: missing weight '{missing[0]}'{more}; the weights do not match config.json"
        )
    unexpected = sorted(n for n in names if n not in expected and not _IGNORED.match(n))
    if unexpected:
        raise UserError(
            f"{where}: unexpected weight '{unexpected[0]}': the weights do not match config.json"
        )

    def fetch(name: str) -> np.ndarray:
        w = get(name)
        if tuple(w.shape) != expected[name]:
            raise UserError(
                f"{where}: weight '{name}' has shape {tuple(w.shape)}, config.json implies {expected[name]}"
            )
        return np.asarray(w, dtype=np.float32)

    params: dict[str, Any] = {}
    for name, key, _, to_ours, _ in _top_table(cfg, value_head):
        params[key] = np.array(to_ours(fetch(name)), dtype=np.float32, order="C")  # keeps 0-d
    blocks: dict[str, np.ndarray] = {}
    for i in range(cfg.n_layers):
        for name, key, _, to_ours, _ in _layer_table(cfg):
            w = to_ours(fetch(f"model.layers.{i}.{name}"))
            if key not in blocks:
                blocks[key] = np.empty((cfg.n_layers, *w.shape), np.float32)
            blocks[key][i] = w
    params["blocks"] = blocks
    return params


def params_to_hf(
    cfg: ModelConfig, params: dict, value_head: str = "score"
) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, array) pairs for our pure-dict params, in HF's order, one layer at a time."""

    def host(x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    top = {name: (key, to_hf) for name, key, _, _, to_hf in _top_table(cfg, value_head)}
    yield "model.embed_tokens.weight", host(params["embed"])
    blocks = params["blocks"]
    for i in range(cfg.n_layers):
        for name, key, _, _, to_hf in _layer_table(cfg):
            yield f"model.layers.{i}.{name}", np.array(to_hf(host(blocks[key][i])), order="C")
    for name, (key, to_hf) in top.items():
        if key != "embed":
            yield name, np.array(to_hf(host(params[key])), order="C")


# ------------------------------------------------------------------- old Phi (phi-msft) layout

_MSFT_RENAMES = [
    (re.compile(r"^transformer\.embd\.wte\.weight$"), "model.embed_tokens.weight"),
    (re.compile(r"^lm_head\.ln\.(weight|bias)$"), r"model.final_layernorm.\1"),
    (re.compile(r"^lm_head\.linear\.(weight|bias)$"), r"lm_head.\1"),
    (
        re.compile(r"^transformer\.h\.(\d+)\.ln\.(weight|bias)$"),
        r"model.layers.\1.input_layernorm.\2",
    ),
    (
        re.compile(r"^transformer\.h\.(\d+)\.mixer\.Wqkv\.(weight|bias)$"),
        r"model.layers.\1.self_attn.Wqkv.\2",
    ),
    (
        re.compile(r"^transformer\.h\.(\d+)\.mixer\.out_proj\.(weight|bias)$"),
        r"model.layers.\1.self_attn.dense.\2",
    ),
    (
        re.compile(r"^transformer\.h\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$"),
        r"model.layers.\1.mlp.\2.\3",
    ),
]


def _msft_names(names: set[str]) -> dict[str, tuple[str, int | None]]:
    """HF-layout name -> (old name, index into the fused Wqkv or None)."""
    # mixformer-sequential: layers.0 is the embedding, layers.L+1 the head.
    layered = any(n.startswith("layers.") for n in names)
    if layered:
        n_layers = max(int(n.split(".")[1]) for n in names if n.startswith("layers.")) - 1
    out: dict[str, tuple[str, int | None]] = {}
    for old in names:
        new = old
        if layered:
            m = re.match(r"^layers\.(\d+)\.(.*)$", old)
            if m:
                i, rest = int(m.group(1)), m.group(2)
                if i == 0:
                    new = "transformer.embd." + rest
                elif i == n_layers + 1:
                    new = "lm_head." + rest
                else:
                    new = f"transformer.h.{i - 1}.{rest}"
        for pattern, repl in _MSFT_RENAMES:
            if pattern.match(new):
                new = pattern.sub(repl, new)
                break
        if ".self_attn.Wqkv." in new:
            for j, n in enumerate("qkv"):
                out[new.replace(".Wqkv.", f".{n}_proj.")] = (old, j)
        else:
            out[new] = (old, None)
    return out


# ------------------------------------------------------------------------------- reading a dir


class _Tensors:
    """Lazy access to the tensors of an HF model directory (safetensors, sharded or not; or .bin)."""

    def __init__(self, hf_dir: Path):
        self.dir = hf_dir
        self.where: dict[str, Path] = {}
        self._open: dict[Path, Any] = {}
        self._bin: dict[str, Any] | None = None
        index = hf_dir / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(f"{index}: not a valid safetensors index ({e})") from None
            for name, file in weight_map.items():
                path = hf_dir / file
                if not path.is_file():
                    raise UserError(f"{index}: shard {file} (holding '{name}') is missing")
                self.where[name] = path
            self.label = str(index)
            return
        files = sorted(hf_dir.glob("*.safetensors"))
        if files:
            from safetensors import safe_open

            for path in files:
                try:
                    with safe_open(str(path), framework="np") as f:
                        self.where.update(dict.fromkeys(f.keys(), path))
                except Exception as e:  # SafetensorError and OSError
                    raise UserError(f"{path}: cannot read safetensors ({e})") from None
            self.label = str(files[0]) if len(files) == 1 else str(hf_dir)
            return
        bins = sorted(hf_dir.glob("pytorch_model*.bin"))
        if bins:
            self._load_bins(bins)
            self.label = str(bins[0]) if len(bins) == 1 else str(hf_dir)
            return
        raise UserError(
            f"{hf_dir}: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)"
        )

    def _load_bins(self, bins: list[Path]) -> None:
        try:
            import torch
        except ImportError:
            raise UserError(
                f"{bins[0]}: reading pytorch_model.bin needs torch; or re-save the model as safetensors"
            ) from None
        self._bin = {}
        for path in bins:
            try:
                sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise UserError(
                    f"{path}: cannot read ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                ) from None
            self._bin.update(sd)
            self.where.update(dict.fromkeys(sd, path))

    def names(self) -> set[str]:
        return set(self.where)

    def get(self, name: str) -> np.ndarray:
        if self._bin is not None:
            return self._bin[name].float().numpy()
        path = self.where[name]
        if path not in self._open:
            from safetensors import safe_open

            try:
                self._open[path] = safe_open(str(path), framework="np")
            except Exception as e:
                raise UserError(f"{path}: cannot read safetensors ({e})") from None
        try:
            return self._open[path].get_tensor(name)
        except Exception as e:
            raise UserError(f"{path}: cannot read tensor '{name}' ({e})") from None


def read_hf_config(hf_dir: str | Path) -> dict:
    """The parsed config.json of an HF model directory (UserError when absent or invalid)."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir}: no such directory")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{hf_dir}: not a Hugging Face model directory (no config.json)")
    try:
        hc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(hc, dict):
        raise UserError(f"{path}: expected a JSON object")
    return hc


def import_hf_dir(hf_dir: str | Path, *, dtype: str = "float32") -> tuple[ModelConfig, dict]:
    """(ModelConfig, float32 numpy params as a pure dict) of an HF Phi directory."""
    hf_dir = Path(hf_dir)
    hc = read_hf_config(hf_dir)
    where = str(hf_dir / "config.json")
    config_from_hf(hc, "lm", where=where)  # a non-Phi config fails here, before any weight is read
    tensors = _Tensors(hf_dir)
    names = tensors.names()
    old = hc.get("model_type") in OLD_MODEL_TYPES or any(".mixer.Wqkv." in n for n in names)
    head = head_from_hf(hc, names, where)
    cfg = config_from_hf(hc, head, where=where, dtype=dtype)
    get = tensors.get
    if old:
        mapping = _msft_names(names)
        names = set(mapping)

        def get(name: str) -> np.ndarray:
            old_name, j = mapping[name]
            w = tensors.get(old_name)
            return np.split(w, 3, axis=0)[j] if j is not None else w

    return cfg, hf_to_params(cfg, get, names, where=tensors.label)


# ------------------------------------------------------------------------------------ export


def value_head_name() -> str:
    """What the installed transformers calls PhiForTokenClassification's head (`score` since 4.50)."""
    try:
        import torch
        from transformers import PhiConfig, PhiForTokenClassification
    except ImportError:
        return "score"
    tiny = PhiConfig(
        vocab_size=8,
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_labels=1,
    )
    with torch.device("meta"):
        names = PhiForTokenClassification(tiny).state_dict().keys()
    heads = {n.split(".")[0] for n in names if not n.startswith("model.")}
    return heads.pop() if len(heads) == 1 else "score"


def parse_size(text: str) -> int:
    """'2GB', '500MB', '10KB', '123' -> bytes (decimal units, as transformers' max_shard_size)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UserError(f"--shard-size: cannot parse {text!r} (e.g. 2GB, 500MB)")
    unit = (m.group(2) or "B").upper()
    base = 1024 if "I" in unit else 1000
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    return int(float(m.group(1)) * base**power)


def write_safetensors(
    tensors: Iterator[tuple[str, np.ndarray]], out_dir: Path, shard_size: int
) -> list[str]:
    """Write `tensors` as model.safetensors, or shards plus model.safetensors.index.json past
    `shard_size` bytes (the file names transformers' save_pretrained uses). Returns the files."""
    from safetensors.numpy import save_file

    meta = {"format": "pt"}
    written: list[tuple[str, list[str]]] = []  # (temporary file name, tensor names)
    shard: dict[str, np.ndarray] = {}
    size = total = 0

    def flush() -> None:
        name = f".shard-{len(written):05d}.tmp"
        save_file(shard, str(out_dir / name), metadata=meta)
        written.append((name, list(shard)))

    for name, w in tensors:  # one shard in memory at a time
        if shard and size + w.nbytes > shard_size:
            flush()
            shard, size = {}, 0
        shard[name] = w
        size += w.nbytes
        total += w.nbytes
    flush()
    if len(written) == 1:
        (out_dir / written[0][0]).rename(out_dir / "model.safetensors")
        return ["model.safetensors"]
    files = [f"model-{i + 1:05d}-of-{len(written):05d}.safetensors" for i in range(len(written))]
    weight_map = {}
    for file, (tmp_name, names) in zip(files, written):
        (out_dir / tmp_name).rename(out_dir / file)
        weight_map.update(dict.fromkeys(names, file))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return [*files, "model.safetensors.index.json"]


def export_checkpoint(
    ckpt: str | Path, out: str | Path, *, shard_size: int | str = "2GB", dtype: str = "float32",
    overwrite: bool = False,
) -> dict:  # fmt: skip
    """Write checkpoint `ckpt` as an HF model directory `out`, atomically; returns a summary dict."""
    from tinygsm_jax.checkpoint import load_model, read_model_info, resolve
    from tinygsm_jax.tokenizer import load_tokenizer

    if dtype not in ("float32", "bfloat16"):
        raise UserError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    shard_bytes = parse_size(shard_size) if isinstance(shard_size, str) else int(shard_size)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    root, _ = resolve(ckpt)
    read_model_info(root)
    tok = load_tokenizer(root / "tokenizer")
    loaded = load_model(ckpt)
    cfg = loaded.config
    if len(tok) > cfg.vocab_size:
        raise UserError(
            f"{root}: tokenizer has {len(tok)} tokens, more than the model's vocab_size {cfg.vocab_size}"
        )
    from flax import nnx

    params = nnx.to_pure_dict(nnx.state(loaded.model, nnx.Param))
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    hc = make_phi_config(cfg, eos_token_id=eos, bos_token_id=bos, pad_token_id=pad, dtype=dtype)
    head_name = value_head_name()
    cast = (lambda w: w) if dtype == "float32" else (lambda w: w.astype(_bfloat16()))
    with atomic_path(out, is_dir=True) as tmp:
        hc.save_pretrained(str(tmp))
        files = write_safetensors(
            ((n, cast(w)) for n, w in params_to_hf(cfg, params, head_name)), tmp, shard_bytes
        )
        for path in sorted(loaded.tokenizer_dir.iterdir()):
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        if cfg.head == "lm":
            from transformers import GenerationConfig

            GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).save_pretrained(
                str(tmp)
            )
    return {
        "config": cfg,
        "step": loaded.step,
        "files": files,
        "architecture": ARCHITECTURES[cfg.head],
    }


def _bfloat16():
    import ml_dtypes

    return ml_dtypes.bfloat16
