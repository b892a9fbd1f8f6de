"""The tokenizer CLI: a byte-level BPE that loads with AutoTokenizer and round-trips code exactly."""

import json
import re

import pytest

from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.solution_format import make_program
from tinygsm_jax.tokenizer import load_tokenizer, main, splits_digits, tokenizer_fingerprint

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


# ----------------------------------------------------------------------- --split-digits

# What the default (no flag) gave on the `trained` corpus before --split-digits existed: the same
# fingerprint (vocabulary, merges, specials) and the same ids, so stored data sets stay valid.
DEFAULT_FINGERPRINT = "aecd97609171e9b2"
DEFAULT_TEXT = "Sam has 1234 apples and $7 (7 left).\n    apples = 12\n    result = apples - 5\n"
DEFAULT_IDS = [310, 302, 359, 19, 20, 266, 306, 221, 4, 23, 221, 8, 23, 273, 9, 14, 261, 266, 272,
               359, 261, 316, 272, 266, 296, 318, 199]  # fmt: skip

TRICKY = [
    "x = 1000\ny = 3.5\nz = 007\nw = -12\n",
    "x2 = $7 + (7) + 7 + y10z\n",
    "    big = 1_000_000 * 2e10 + 0x1F\n",
    "\tif a>=10:\n\t\treturn a%3\n",
    "price = '$1,234.50'  # 20% off\n",
    "  \n\n    n = 5   \n\n\n",
    "def f():\n\treturn 'caf\u00e9 \u00bd \u00b2 \u0663\u0664 \u20ac5'\n",
]


def _digit_only_ids(tok, text):
    """The tokens of `text`, and the ids of those that are ASCII digits."""
    pieces = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])
    return pieces, [tok.convert_tokens_to_ids(p) for p in pieces if p.isascii() and p.isdigit()]


@pytest.fixture(scope="module")
def teacher_rows():
    from data_gen.offline import generate

    return list(generate(120, seed=3))


@pytest.fixture(scope="module")
def split_trained(tmp_path_factory, teacher_rows):
    d = tmp_path_factory.mktemp("split")
    with (d / "rows.jsonl").open("w") as f:
        for row in teacher_rows:
            f.write(json.dumps({"question": row["question"], "code": row["code"]}) + "\n")
    argv = ["train", "--source", str(d / "rows.jsonl"), "--vocab-size", "400"]
    main([*argv, "--split-digits", "--out", str(d / "tok")])
    main([*argv, "--out", str(d / "plain")])
    return d


def test_default_is_unchanged(trained):
    tok = load_tokenizer(trained / "tok")
    assert len(tok) == 400 and tokenizer_fingerprint(tok) == DEFAULT_FINGERPRINT
    assert tok(DEFAULT_TEXT, add_special_tokens=False)["input_ids"] == DEFAULT_IDS
    spec = json.loads((trained / "tok" / "tokenizer.json").read_text())["pre_tokenizer"]
    assert spec["type"] == "ByteLevel" and not splits_digits(tok)
    # ... and it does merge digits: '1234' is fewer tokens than digits.
    assert len(_digit_only_ids(tok, " 1234")[0]) < 4


def test_split_digits_round_trips_teacher_programs_exactly(split_trained, teacher_rows):
    tok = load_tokenizer(split_trained / "tok")
    for row in teacher_rows:
        for text in (row["question"], row["code"]):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == text


@pytest.mark.parametrize("text", TRICKY)
def test_split_digits_round_trips_tricky_strings(split_trained, text):
    tok = load_tokenizer(split_trained / "tok")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    cut = len(text) // 2  # prompt and body tokenized apart, as the data pipeline does
    parts = [tok(t, add_special_tokens=False)["input_ids"] for t in (text[:cut], text[cut:])]
    assert tok.decode(parts[0] + parts[1]) == text


def test_every_digit_is_one_token(split_trained, teacher_rows):
    tok = load_tokenizer(split_trained / "tok")
    texts = TRICKY + [t for row in teacher_rows[:40] for t in (row["question"], row["code"])]
    for text in texts:
        pieces, digit_ids = _digit_only_ids(tok, text)
        # No token holds an ASCII digit beside anything else, and each digit is one token.
        assert all(len(p) == 1 for p in pieces if re.search("[0-9]", p)), pieces
        assert [tok.convert_ids_to_tokens(i) for i in digit_ids] == re.findall("[0-9]", text)


def test_a_number_is_the_same_digits_wherever_it_stands(split_trained):
    tok = load_tokenizer(split_trained / "tok")
    # The space before a number is a token of its own; the digits never carry it.
    assert _digit_only_ids(tok, " 1234")[0] == ["\u0120", "1", "2", "3", "4"]
    assert _digit_only_ids(tok, "1234")[0] == ["1", "2", "3", "4"]
    seven = {ctx: _digit_only_ids(tok, ctx)[1] for ctx in ("$7", " 7", "(7", "x7", "7")}
    assert len({tuple(v) for v in seven.values()}) == 1 and len(seven["$7"]) == 1, seven
    # The default tokenizer, trained on the same rows, is where ' 7' and '$7' differ.
    plain = load_tokenizer(split_trained / "plain")
    assert _digit_only_ids(plain, " 7")[0] != ["\u0120", "7"]


def test_split_digits_is_recorded_and_survives_save_and_load(split_trained, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from tinygsm_jax.tokenizer import save_tokenizer

    spec = json.loads((split_trained / "tok" / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in spec["pretokenizers"]] == ["Digits", "ByteLevel"]
    assert spec["pretokenizers"][0]["individual_digits"] is True
    tok = load_tokenizer(split_trained / "tok")
    assert splits_digits(tok) and not splits_digits(load_tokenizer(split_trained / "plain"))
    save_tokenizer(tok, tmp_path / "again")
    text = TRICKY[1]
    want = tok(text, add_special_tokens=False)["input_ids"]
    for loader in (
        load_tokenizer,
        AutoTokenizer.from_pretrained,
        PreTrainedTokenizerFast.from_pretrained,
    ):
        again = loader(str(tmp_path / "again"))
        assert splits_digits(again) and again(text, add_special_tokens=False)["input_ids"] == want
    assert tokenizer_fingerprint(load_tokenizer(tmp_path / "again")) == tokenizer_fingerprint(tok)
    # The fingerprint tells the split apart even from the very same merges without it.
    from tokenizers import pre_tokenizers

    unsplit = load_tokenizer(split_trained / "tok")
    unsplit.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert not splits_digits(unsplit)
    assert tokenizer_fingerprint(unsplit) != tokenizer_fingerprint(tok)


def test_split_digits_survives_the_hf_export(split_trained, tmp_path):
    """A checkpoint trained with the split tokenizer exports tokenizer files that transformers
    loads with the same splitting, and importing the export back keeps it."""
    from test_sampler import random_model
    from transformers import PreTrainedTokenizerFast

    from tinygsm_jax import export, import_hf
    from tinygsm_jax.checkpoint import save_model

    save_model(tmp_path / "ckpt", random_model("lm", 0, vocab_size=416), split_trained / "tok")
    assert export.main(["--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")]) == 0
    text = TRICKY[0] + TRICKY[1]
    want = load_tokenizer(split_trained / "tok")(text, add_special_tokens=False)["input_ids"]
    hf_tok = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "hf"))
    assert splits_digits(hf_tok) and hf_tok(text, add_special_tokens=False)["input_ids"] == want
    assert hf_tok.decode(want) == text
    assert import_hf.main(["--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    back = load_tokenizer(tmp_path / "back" / "tokenizer")
    assert splits_digits(back) and back(text, add_special_tokens=False)["input_ids"] == want


@pytest.mark.parametrize("split", [False, True])
def test_demo_passes_split_digits_to_the_tokenizer_stage(split, tmp_path):
    from helpers import demo_stages

    [argv] = demo_stages(tmp_path, tokenizer_split_digits=split)["tokenizer"].commands
    assert argv[:2] == ["tinygsm_jax.tokenizer", "train"]
    assert ("--split-digits" in argv) is split
