"""The tokenizer CLI: a byte-level BPE that loads with AutoTokenizer and round-trips code exactly."""

import json

import pytest

from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.solution_format import make_program
from tinygsm_jax.tokenizer import load_tokenizer, main, tokenizer_fingerprint

BODY = (
    "    apples = 12\n"
    "    eaten = 5\n"
    "\n"
    "    if apples > eaten:\n"
    "        left = apples - eaten\n"
    "    else:\n"
    "\tleft = 0\n"
    "    result = left  # 7 left\n"
    "    return result\n"
)


def _write_rows(path, n=200):
    with path.open("w") as f:
        for i in range(n):
            q = f"Sam has {i + 3} apples and eats {i % 5} of them. How many apples are left for the {i}th party?"
            f.write(
                json.dumps({"question": q, "code": make_program(q, BODY.replace("12", str(i + 3)))})
                + "\n"
            )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    _write_rows(d / "rows.jsonl")
    main(
        ["train", "--source", str(d / "rows.jsonl"), "--vocab-size", "400", "--out", str(d / "tok")]
    )
    return d


def test_trains_and_loads_with_autotokenizer(trained):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    out = trained / "tok"
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in out.iterdir()
    }
    tok = AutoTokenizer.from_pretrained(str(out))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert 257 <= len(tok) <= 400
    # Training learned merges: the common program text costs far fewer tokens than bytes.
    program = make_program("Sam has 3 apples. How many are left?", BODY)
    assert len(tok(program, add_special_tokens=False)["input_ids"]) < len(program.encode()) / 2


@pytest.mark.parametrize(
    "text",
    [
        make_program("Sam has 3 apples. How many are left?", BODY),
        BODY,
        "    \n        x = 1\n\n\n            y = 2   \n",
        "def f():\n\treturn 'caf\u00e9 \u00bd \u20ac5'\n",
    ],
)
def test_code_round_trips_exactly(trained, text):
    tok = load_tokenizer(trained / "tok")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    # Prompt and body tokenized apart (as the data pipeline does) also decode to the program.
    prompt, body = text[: len(text) // 2], text[len(text) // 2 :]
    parts = (
        tok(prompt, add_special_tokens=False)["input_ids"]
        + tok(body, add_special_tokens=False)["input_ids"]
    )
    assert tok.decode(parts) == text


def test_eos_is_one_special_token(trained):
    tok = load_tokenizer(trained / "tok")
    ids = tok("return result\n<|endoftext|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[:-1]) == "return result\n"


def test_fingerprint_is_stable_and_tells_tokenizers_apart(trained, tmp_path):
    a = tokenizer_fingerprint(load_tokenizer(trained / "tok"))
    assert a == tokenizer_fingerprint(load_tokenizer(trained / "tok"))
    main(
        [
            "train",
            "--source",
            str(trained / "rows.jsonl"),
            "--vocab-size",
            "300",
            "--out",
            str(tmp_path / "other"),
        ]
    )
    assert tokenizer_fingerprint(load_tokenizer(tmp_path / "other")) != a


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(
        json.dumps({"question": "q", "code": "c"}) + "\n" + json.dumps({"question": "q"}) + "\n"
    )
    with pytest.raises(SystemExit) as e:
        run_main(
            main,
            ["train", "--source", str(src), "--vocab-size", "300", "--out", str(tmp_path / "tok")],
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()  # a progress bar may precede it
    assert err[-1] == f"error: {src}:2: missing field 'code'"
    assert not (tmp_path / "tok").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load tokenizer"):
        load_tokenizer(tmp_path / "broken")
