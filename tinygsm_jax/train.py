"""Train the generator or the verifier: one loop, two objectives, any mesh, exact resume.

    python -m tinygsm_jax.train --config configs/tiny.py --workdir runs/tiny [--config.key=value ...]
        [--coordinator-address HOST:PORT --num-processes N --process-id I]

The workdir becomes a checkpoint every command accepts (model.json + tokenizer/ + orbax
steps). Rerunning the same command resumes from its latest good step, with the data position
restored, so the losses continue bit for bit as if never interrupted. SIGTERM (preemption)
saves and exits cleanly. A verifier starts from its generator with `--config.train.init_from`:
the trunk is copied, the scalar head is new. Every bad setting is reported in one line before
anything is compiled. The step itself lives in `tinygsm_jax.train_step`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from tinygsm_jax import checkpoint, sharding, train_eval
from tinygsm_jax.cli import UserError, as_path, local_copy, run_main
from tinygsm_jax.config import add_config_args, load_config
from tinygsm_jax.metrics import MetricsWriter, peak_flops
from tinygsm_jax.model import ModelConfig, count_params, flops_per_token
from tinygsm_jax.train_step import Trainer, check_config, make_trainer

SHAPE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_mlp", "rotary_dim")


def check_init_from(config: ConfigDict) -> tuple[Path, ModelConfig] | None:
    """The checkpoint to start from and its model config, if its trunk fits ours."""
    if not config.train.init_from:
        return None
    root, _ = checkpoint.resolve(config.train.init_from)
    info = checkpoint.read_model_info(root)
    src = ModelConfig(**info["model"])
    for name in SHAPE_FIELDS:
        if getattr(src, name) != config.model[name]:
            raise UserError(
                f"config.train.init_from {root}: model.{name} is {getattr(src, name)}, config has {config.model[name]}"
            )
    return root, src


def check_tokenizer(config: ConfigDict, pipeline, init: tuple[Path, ModelConfig] | None) -> Path:
    """The tokenizer directory to ship with the checkpoints; refuses mixed or too-large vocabularies."""
    data_dir = getattr(pipeline, "tokenizer_dir", None)
    tok_dir = as_path(data_dir) if data_dir else (init[0] / "tokenizer" if init else None)
    if tok_dir is None:
        raise UserError(
            f"{config.data.path}: the data set has no tokenizer; rebuild it with --tokenizer DIR"
        )
    if init is not None:
        from tinygsm_jax.tokenizer import load_tokenizer, tokenizer_fingerprint

        theirs = tokenizer_fingerprint(load_tokenizer(init[0] / "tokenizer"))
        ours = getattr(pipeline, "tokenizer_fingerprint", None) or tokenizer_fingerprint(
            load_tokenizer(tok_dir)
        )
        if ours != theirs:
            raise UserError(
                f"{config.data.path}: built with another tokenizer (fingerprint {ours}) than "
                f"config.train.init_from {init[0]} (fingerprint {theirs}); rebuild the data with its tokenizer/"
            )
    size = tokenizer_size(tok_dir)
    if size > config.model.vocab_size:
        raise UserError(
            f"config.model.vocab_size {config.model.vocab_size} is smaller than the tokenizer's {size} tokens"
        )
    return tok_dir


def tokenizer_size(tok_dir: Path) -> int:
    """Number of token ids, added tokens included (`tokenizers` alone is much faster to import)."""
    tok_dir = local_copy(tok_dir)
    if (tok_dir / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab_size(
            with_added_tokens=True
        )
    from tinygsm_jax.tokenizer import load_tokenizer

    return len(load_tokenizer(tok_dir))


def open_pipeline(config: ConfigDict):
    """This host's batches (tests replace this with a synthetic source of the same interface)."""
    if not config.data.path:
        raise UserError(
            "config.data.path is empty: build a data set with `python -m tinygsm_jax.data build`"
        )
    from tinygsm_jax.data.pipeline import InputPipeline

    check_data_execution_result(config)
    B, micro = int(config.train.global_batch), int(config.train.micro_batch)
    grouped = bool(config.data.get("group_by_question", False))
    return InputPipeline(
        config.data.path,
        split="train",
        seq_len=int(config.data.seq_len),
        global_batch=int(config.train.global_batch),
        objective=config.objective,
        seed=int(config.train.seed),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        # the ranking loss's batches: a question's candidates in one micro-batch
        group_by_question=grouped,
        micro_batches=B // micro if grouped and micro else 1,
    )


def execution_result(config: ConfigDict) -> bool:
    """Whether the verifier reads execution lines (`data.execution_result`; absent = False)."""
    return bool(config.data.get("execution_result", False))


def check_data_execution_result(config: ConfigDict) -> None:
    """The config and the data set agree on execution lines: the builder made the ids, and its
    metadata says whether they hold them; eval builds its inputs as the checkpoint says."""
    from tinygsm_jax.data.dataset import open_dataset

    want = execution_result(config)
    _, meta = open_dataset(config.data.path)
    have = bool(meta.extra.get("execution_result", False))
    if have != want:
        raise UserError(
            f"{config.data.path}: built {'with' if have else 'without'} --execution-result, but "
            f"config.data.execution_result is {want}; set it to {have} or rebuild the data set"
        )


def check_workdir_execution_result(workdir: Path, config: ConfigDict) -> None:
    """A verifier only reads execution lines if asked, and a workdir keeps one choice."""
    want = execution_result(config)
    if want and config.objective != "verifier":
        raise UserError("config.data.execution_result is a verifier option (objective=verifier)")
    if (workdir / "model.json").is_file():
        info = checkpoint.read_model_info(workdir)
        old = bool((info.get("data") or {}).get("execution_result", False))
        if old != want:
            raise UserError(
                f"{workdir}: holds a verifier trained with data.execution_result={old}; "
                "use a new --workdir"
            )


def check_workdir(workdir: Path, cfg: ModelConfig, objective: str) -> None:
    """A workdir holds one model: refuse to resume it with another shape or objective."""
    if not (workdir / "model.json").is_file():
        return
    info = checkpoint.read_model_info(workdir)
    fields = SHAPE_FIELDS + ("head", "keep_lm_head")
    old = {k: info["model"].get(k, False if k == "keep_lm_head" else None) for k in fields}
    new = {k: getattr(cfg, k) for k in fields}
    if old != new or info.get("objective") != objective:
        diff = (
            ", ".join(f"{k}: {old[k]} -> {new[k]}" for k in old if old[k] != new[k]) or "objective"
        )
        raise UserError(f"{workdir}: holds a different model ({diff}); use a new --workdir")


def restore_or_init(trainer: Trainer, mngr, workdir: Path, init) -> tuple[dict, int, dict]:
    """(state, step, meta): the latest good checkpoint of `workdir`, else init_from, else fresh.

    Both restore onto this run's mesh, whatever mesh wrote them. Resume alone may go back past
    a step whose files cannot be read (a preemption mid-save), saying so; init_from restores
    exactly the step it names (or the latest), like every inference command.
    """
    if checkpoint.latest_step(workdir) is not None:  # process 0's view, on every process
        abstract = trainer.abstract_state
        items = {
            "params": ocp.args.StandardRestore(abstract["params"]),
            "opt_state": ocp.args.StandardRestore(abstract["opt_state"]),
            "meta": ocp.args.JsonRestore(),
        }
        step, got = checkpoint.restore(workdir, items, fall_back=True)
        for bad in (
            s for s in mngr.all_steps() if s > step
        ):  # damaged steps: their numbers get reused
            mngr.delete(bad)
        state = {"params": got["params"], "opt_state": got["opt_state"], "step": np.int32(step)}
        return jax.device_put(state, trainer.state_shardings), step, dict(got["meta"])
    state = trainer.init(int(trainer.config.train.seed))
    if init is not None:
        _, src = init
        src_shardings = sharding.state_shardings(
            jax.eval_shape(lambda: _param_state(src)), trainer.mesh
        )
        # The path as given: a step directory restores that step, a workdir its latest.
        _, got = checkpoint.restore(
            trainer.config.train.init_from,
            {"params": ocp.args.StandardRestore(checkpoint.abstract_params(src, src_shardings))},
        )
        params = checkpoint.transplant(
            state["params"], got["params"], source_head=src.head, target_head=trainer.model_cfg.head
        )
        state["params"] = jax.device_put(params, trainer.state_shardings["params"])
    return state, 0, {}


def _param_state(cfg: ModelConfig):
    from flax import nnx

    from tinygsm_jax.model import Phi

    return nnx.state(Phi(cfg, rngs=nnx.Rngs(0)), nnx.Param)


def gather_data_states(state: dict) -> list[dict]:
    """Every process's input-pipeline position (JSON), so each host resumes its own stream."""
    return sharding.allgather_json(state)


class Preemption:
    """SIGTERM -> stop after the current step; all hosts agree on the step via JAX's sync point."""

    def __init__(self):
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:  # multi-host: JAX's own preemption notifier handles SIGTERM
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                return self.requested or multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # preemption service disabled
                return self.requested
        return self.requested


def train(config: ConfigDict, workdir: Path) -> int:
    """Run (or resume) training in `workdir`; returns the exit code."""
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    check_config(config, mesh)
    train_eval.check_eval_config(config)
    init = check_init_from(config)
    cfg0 = ModelConfig.from_config(config.model)
    check_workdir(workdir, cfg0, config.objective)
    check_workdir_execution_result(workdir, config)
    pipeline = open_pipeline(config)
    tok_dir = check_tokenizer(config, pipeline, init)

    lead = jax.process_index() == 0
    trainer = make_trainer(config, mesh)
    cfg = trainer.model_cfg
    if lead:
        data = {"execution_result": True} if execution_result(config) else None
        checkpoint.write_model_info(workdir, cfg, config.objective, tok_dir, data=data)
    mngr = checkpoint.manager(workdir, keep=int(config.checkpoint.keep))
    state, start, meta = restore_or_init(trainer, mngr, workdir, init)
    if start:
        mine = meta.get("data_per_process") or []
        same_hosts = len(mine) == jax.process_count()
        pipeline.set_state(mine[jax.process_index()] if same_hosts else meta["data"])
    total = int(config.train.steps)
    if start >= total:
        mngr.close()
        getattr(pipeline, "close", lambda: None)()
        if lead:
            print(
                f"already trained: {workdir} holds step {start} of {total} (raise train.steps to go on)"
            )
        return 0

    t0 = time.time()
    compiled = trainer.step_fn.lower(trainer.abstract_state, trainer.abstract_batch).compile()
    compile_s = time.time() - t0
    peak, peak_source = peak_flops(list(mesh.devices.flat))
    fpt = flops_per_token(cfg, trainer.seq_len)
    writer = MetricsWriter(workdir, enabled=lead)
    writer.write(
        "run",
        n_params=count_params(cfg),
        n_devices=jax.device_count(),
        process_count=jax.process_count(),
        mesh=dict(mesh.shape),
        tokens_per_step=trainer.tokens_per_step,
        param_bytes_per_device=trainer.param_bytes_per_device(),
        objective=config.objective,
        start_step=start,
        total_steps=total,
        flops_per_token=fpt,
        peak_flops=peak,
        peak_flops_source=peak_source,
        compile_seconds=round(compile_s, 3),
        dtype=cfg.dtype,
        backend=jax.default_backend(),
    )

    evaluator = (
        train_eval.TrainEval(config, trainer, tok_dir, workdir)
        if train_eval.enabled(config)
        else None
    )

    def evaluate(step: int) -> None:
        """Greedy accuracy on the eval questions (every host decodes; process 0 logs)."""
        m = evaluator(state["params"], step)
        if m is not None:
            writer.write("eval", time=time.time(), **m)
            print(f"step {step}: eval accuracy {m['eval_accuracy']:.1%} "
                  f"({m['eval_correct']}/{m['eval_questions']}, {m['eval_seconds']:.0f} s)", file=sys.stderr)  # fmt: skip

    if evaluator is not None and evaluator.due(start):  # stopped between checkpoint and eval
        evaluate(start)
    saved = [start]

    def save(step: int) -> None:
        if saved[0] == step:
            return
        saved[0] = step
        data = gather_data_states(pipeline.get_state())
        meta = {
            "step": step,
            "model": cfg.to_dict(),
            "objective": config.objective,
            "data": data[0],
            "data_per_process": data,
            "rng": {"seed": int(config.train.seed)},
        }
        mngr.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state["params"]),
                opt_state=ocp.args.StandardSave(state["opt_state"]),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    from tqdm import tqdm

    bar = tqdm(
        total=total, initial=start, disable=not lead, desc=f"train {config.objective}", unit="step"
    )
    preempt = Preemption()
    step, last_log, last_t, reason, rows, last = start, start, time.time(), "finished", [], {}
    log_every, ckpt_every = int(config.log.every), int(config.checkpoint.every)
    while step < total:
        try:
            local = next(pipeline)
        except StopIteration:
            reason = "out of data"
            break
        state, metrics = compiled(state, trainer.put_batch(local))
        step += 1
        stopping = preempt.reached(step)
        if step % log_every == 0 or step == total or stopping:
            m = jax.device_get(metrics)
            now = time.time()
            tps = trainer.tokens_per_step * (step - last_log) / max(now - last_t, 1e-9)
            last = {
                "step": step,
                "time": now,
                "loss": float(m["loss"]),
                "lr": float(m["lr"]),
                "grad_norm": float(m["grad_norm"]),
                "tokens_per_sec": tps,
                "mfu": tps * fpt / peak,
                "loss_tokens": int(m["loss_tokens"]),
            }
            for key in ("last_token_accuracy", "value_loss", "lm_loss", "rank_loss", "rank_count"):
                if key in m:
                    last[key] = float(m[key])
            writer.write("step", **last)
            rows.append(tps)
            bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{tps:,.0f}")
            last_log, last_t = step, time.time()
        bar.update(1)
        if step % ckpt_every == 0 or step == total or stopping:
            save(step)
        if stopping:
            reason = "preempted"
            break
        if evaluator is not None and evaluator.due(step):
            evaluate(step)
    save(step)  # out of data between checkpoints (a no-op when this step is saved already)
    preempt.close()
    if evaluator is not None:
        evaluator.close()
    mngr.wait_until_finished()
    mngr.close()
    bar.close()
    if hasattr(pipeline, "close"):
        pipeline.close()
    tps = float(np.mean(rows)) if rows else 0.0
    summary = {
        "reason": reason,
        "start_step": start,
        "end_step": step,
        "final_loss": last.get("loss"),
        "mean_tokens_per_sec": tps,
        "mean_mfu": tps * fpt / peak,
        "compile_seconds": round(compile_s, 3),
    }
    writer.write("summary", time=time.time(), **summary)
    writer.close()
    if lead:
        loss = f"{last['loss']:.4f}" if last else "n/a"
        print(
            f"{reason}: steps {start}->{step} of {total}, loss {loss}, {tps:,.0f} tokens/s, "
            f"MFU {summary['mean_mfu']:.1%}, checkpoint {workdir}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.train", description=__doc__.split("\n\n")[0]
    )
    add_config_args(parser)
    parser.add_argument(
        "--workdir", required=True, help="where checkpoints, metrics.jsonl and TensorBoard go"
    )
    sharding.add_distributed_args(parser)
    args, overrides = parser.parse_known_args(argv)
    config = load_config(args.config, overrides)
    sharding.initialize_from_args(args)
    return train(config, as_path(args.workdir))


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
