"""Config composition (sections merged left to right, then `--set`) and validation errors:
each one is an LmforgeError whose single line names the key path, the bad value, the
file:line the key came from and, for unknown keys, the closest valid name."""

from __future__ import annotations

import textwrap

import pytest

from lmforge.config.loader import apply_overrides, compose, list_sections, load_config, validate
from lmforge.errors import LmforgeError


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path, sections=None, overrides=None) -> str:
    with pytest.raises(LmforgeError) as info:
        load_config(path, sections, overrides)
    message = str(info.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    return message


# Line numbers are written next to each line; the tests below quote them.
SECTIONED = """
defaults:                   # 1
  model:                    # 2
    tokenizer: tok          # 3
  train:                    # 4
    optimizer:              # 5
      lr: 0.001             # 6
      weight_decay: 0.1     # 7
    report_to: [tensorboard, wandb]   # 8
    epochs: 2               # 9
small:                      # 10
  model:                    # 11
    size:                   # 12
      hidden_size: 64       # 13
  train:                    # 14
    optimizer:              # 15
      lr: 0.01              # 16
    report_to: [mlflow]     # 17
tiny:                       # 18
  model:                    # 19
    size:                   # 20
      hidden_size: 32       # 21
      num_heads: 2          # 22
"""


# --------------------------------------------------------------------------- composing


def test_sections_merge_left_to_right_nested_mappings_merge_and_lists_replace(tmp_path):
    path = write(tmp_path, SECTIONED)
    config = load_config(path, ["defaults", "small"])
    # small overrides lr, defaults' sibling weight_decay survives the nested merge
    assert config.train.optimizer.lr == 0.01
    assert config.train.optimizer.weight_decay == 0.1
    # the list is replaced, not concatenated
    assert config.train.report_to == ["mlflow"]
    assert config.train.epochs == 2.0
    assert config.model.tokenizer == "tok"
    assert config.model.size.hidden_size == 64
    assert config.model.size.num_heads == 4  # schema default, untouched


def test_later_section_wins_on_the_same_key(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert load_config(path, ["defaults", "small", "tiny"]).model.size.hidden_size == 32
    assert load_config(path, ["defaults", "tiny", "small"]).model.size.hidden_size == 64
    # tiny's num_heads survives small's later merge of model.size
    assert load_config(path, ["defaults", "tiny", "small"]).model.size.num_heads == 2


def test_compose_records_the_line_each_key_was_last_set(tmp_path):
    path = write(tmp_path, SECTIONED)
    raw = compose(path, ["defaults", "small"])
    assert raw.origins[("train", "optimizer", "lr")] == f"{path}:16"
    assert raw.origins[("train", "optimizer", "weight_decay")] == f"{path}:7"
    assert raw.origins[("model", "tokenizer")] == f"{path}:3"
    assert raw.origins[("model", "size", "hidden_size")] == f"{path}:13"


def test_sectioned_file_without_sections_uses_defaults(tmp_path):
    path = write(tmp_path, SECTIONED)
    config = load_config(path)
    assert config.train.optimizer.lr == 0.001
    assert config.train.report_to == ["tensorboard", "wandb"]
    assert config.model.size.hidden_size == 256  # small was not applied


def test_sectioned_file_without_defaults_asks_for_sections(tmp_path):
    path = write(
        tmp_path,
        """
        one:
          model:
            tokenizer: tok
        two:
          train:
            epochs: 3
    """,
    )
    assert error_of(path) == f"{path}: name the sections to use; this file has: one, two"
    assert load_config(path, ["one", "two"]).train.epochs == 3.0


def test_unknown_section_suggests_the_closest(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, ["defaults", "smal"]) == f"{path}: no section 'smal' (did you mean 'small'?)"


def test_unknown_section_without_a_close_match_lists_the_sections(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, ["zzz"]) == f"{path}: no section 'zzz'; sections: defaults, small, tiny"


def test_list_sections(tmp_path):
    assert list_sections(write(tmp_path, SECTIONED)) == ["defaults", "small", "tiny"]
    plain = write(tmp_path, "model:\n  tokenizer: tok\n", "plain.yaml")
    assert list_sections(plain) == []


def test_plain_file_is_one_config(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          epochs: 3
          report_to: [wandb]
    """,
    )
    config = load_config(path)
    assert config.model.tokenizer == "tok"
    assert config.train.epochs == 3.0
    assert config.train.report_to == ["wandb"]


def test_plain_file_rejects_sections(tmp_path):
    path = write(tmp_path, "model:\n  tokenizer: tok\n")
    assert error_of(path, ["small"]) == (
        f"{path}: has no sections (it is a plain config), but sections ['small'] were asked for"
    )


# --------------------------------------------------------------------------- --set


def test_set_applies_after_all_sections(tmp_path):
    path = write(tmp_path, SECTIONED)
    config = load_config(path, ["defaults", "small"], ["train.optimizer.lr=0.5", "model.size.hidden_size=128"])
    assert config.train.optimizer.lr == 0.5
    assert config.model.size.hidden_size == 128
    assert config.train.optimizer.weight_decay == 0.1  # untouched siblings stay


def test_set_parses_yaml_values(tmp_path):
    path = write(tmp_path, SECTIONED)
    config = load_config(
        path,
        overrides=[
            "train.optimizer.lr=1e-5",
            "train.report_to=[mlflow, wandb]",
            "train.gradient_checkpointing=true",
            "train.max_steps=null",
            "train.epochs=3",
            "run.output_dir=runs/a=b",  # only the first '=' separates key from value
        ],
    )
    # PyYAML (YAML 1.1) reads `1e-5` as the string '1e-5'; pydantic's float parsing makes it 1e-5
    assert config.train.optimizer.lr == 1e-5
    assert config.train.report_to == ["mlflow", "wandb"]
    assert config.train.gradient_checkpointing is True
    assert config.train.max_steps is None
    assert config.train.epochs == 3.0
    assert config.run.output_dir == "runs/a=b"


def test_set_parses_raw_values(tmp_path):
    raw = compose(write(tmp_path, SECTIONED))
    apply_overrides(
        raw,
        [
            "train.report_to=[a, b]",
            "train.gradient_checkpointing=true",
            "train.max_steps=null",
            "run.seed=7",
            "train.optimizer.eps=1.0e-6",
        ],
    )
    assert raw.data["train"]["report_to"] == ["a", "b"]
    assert raw.data["train"]["gradient_checkpointing"] is True
    assert raw.data["train"]["max_steps"] is None
    assert raw.data["run"] == {"seed": 7}  # intermediate mapping created
    assert raw.data["train"]["optimizer"] == {"lr": 0.001, "weight_decay": 0.1, "eps": 1e-6}
    assert raw.origins[("run", "seed")] == "--set run.seed"


def test_set_replaces_a_list(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert load_config(path, overrides=["train.report_to=[mlflow]"]).train.report_to == ["mlflow"]


@pytest.mark.parametrize("override", ["train.epochs", "=3"])
def test_set_without_key_or_equals_is_an_error(tmp_path, override):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, overrides=[override]) == f"--set {override!r}: expected key.path=value"


def test_set_through_a_scalar_is_an_error(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, overrides=["model.tokenizer.x=1"]) == (
        "--set 'model.tokenizer.x=1': 'model.tokenizer' is not a mapping"
    )


# --------------------------------------------------------------------------- validation errors


def test_unknown_key_names_path_closest_name_and_line(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          optimizer:
            lr: 0.001
            wieght_decay: 0.1
    """,
    )
    assert error_of(path) == (
        f"{path}:6: unknown key 'train.optimizer.wieght_decay' (did you mean 'train.optimizer.weight_decay'?)"
    )


def test_unknown_key_in_a_section_points_at_that_sections_line(tmp_path):
    path = write(
        tmp_path,
        SECTIONED + "typo:                       # 23\n  train:                    # 24\n"
        "    epoks: 3                # 25\n",
    )
    assert (
        error_of(path, ["defaults", "typo"]) == f"{path}:25: unknown key 'train.epoks' (did you mean 'train.epochs'?)"
    )


def test_unknown_key_without_a_close_name_lists_the_valid_keys(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        run:
          zzzzzz: 1
    """,
    )
    assert error_of(path) == f"{path}:4: unknown key 'run.zzzzzz' (valid keys: output_dir, seed, card)"


def test_unknown_key_from_set_names_the_override(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, overrides=["train.optimizer.lrr=2"]) == (
        "--set train.optimizer.lrr: unknown key 'train.optimizer.lrr' (did you mean 'train.optimizer.lr'?)"
    )


def test_a_key_only_a_set_introduces_is_blamed_on_the_set_not_the_file(tmp_path):
    """`model` comes from the file (line 2), `model.adaptr` only from the --set: the error
    names the --set, though its unknown key lies above the key it sets."""
    path = write(tmp_path, SECTIONED)
    assert error_of(path, ["defaults", "small"], overrides=["model.adaptr.type=lora"]) == (
        "--set model.adaptr.type: unknown key 'model.adaptr' (did you mean 'model.adapter'?)"
    )
    assert error_of(path, overrides=["run.card.licence=mit"]) == (  # `run` exists in no section either
        "--set run.card.licence: unknown key 'run.card.licence' (did you mean 'run.card.license'?)"
    )


def test_a_set_that_replaces_a_mapping_owns_what_lies_below_it(tmp_path):
    path = write(tmp_path, SECTIONED)
    assert error_of(path, overrides=["train.optimizer={lrr: 2}"]) == (
        "--set train.optimizer: unknown key 'train.optimizer.lrr' (did you mean 'train.optimizer.lr'?)"
    )
    # a file key beside the --set keeps its own line
    assert error_of(path, ["defaults", "small"], overrides=["model.size.hiden=1"]) == (
        "--set model.size.hiden: unknown key 'model.size.hiden' (did you mean 'model.size.hidden_size'?)"
    )


def test_unknown_key_inside_a_discriminated_union(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          objective:
            name: mixce
            ratoi: 0.5
    """,
    )
    # the union tag 'mixce' pydantic adds to the location is not part of the key path
    assert error_of(path) == (f"{path}:6: unknown key 'train.objective.ratoi' (did you mean 'train.objective.ratio'?)")


def test_union_member_is_chosen_by_name(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          objective:
            name: mixce
            ratio: 0.5
    """,
    )
    objective = load_config(path).train.objective
    assert (objective.name, objective.ratio) == ("mixce", 0.5)


def test_unknown_union_tag(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          objective:
            name: kto
    """,
    )
    assert error_of(path) == (
        f"{path}:5: train.objective.name = 'kto' is not one of: ce, mixce, masked_thought, remask, remask_cot, rank, dpo, ipo, spin, orpo, simpo"
    )


def test_wrong_type_names_path_and_value(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          global_batch_size: lots
    """,
    )
    message = error_of(path)
    assert message.startswith(f"{path}:4: train.global_batch_size = 'lots': ")
    assert "valid integer" in message


def test_value_constraint(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          optimizer:
            lr: -0.001
    """,
    )
    assert error_of(path) == f"{path}:5: train.optimizer.lr = -0.001: Input should be greater than 0"


def test_literal_choice(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        data:
          overlength: cut
    """,
    )
    assert error_of(path) == f"{path}:4: data.overlength = 'cut': Input should be 'truncate' or 'drop'"


def test_hidden_size_must_divide_by_heads(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
          size:
            hidden_size: 100
            num_heads: 3
    """,
    )
    assert error_of(path) == (f"{path}:3: model.size: hidden_size 100 is not divisible by num_heads 3")


def test_heads_must_divide_by_kv_heads(tmp_path):
    path = write(tmp_path, SECTIONED)
    message = error_of(path, overrides=["model.size.num_kv_heads=3"])
    assert message.endswith("num_heads 4 is not divisible by num_kv_heads 3")


def test_splits_must_leave_training_data(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        data:
          datasets:
            - path: a.jsonl
              val_split: 0.5
              test_split: 0.5
    """,
    )
    # the error is about list item 0, which starts on line 5
    assert error_of(path) == (f"{path}:5: data.datasets.0: val_split + test_split must leave some data for training")


def test_splits_just_under_one_are_accepted(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        data:
          datasets:
            - {path: a.jsonl, val_split: 0.5, test_split: 0.25}
    """,
    )
    [entry] = load_config(path).data.datasets
    assert (entry.val_split, entry.test_split, entry.format) == (0.5, 0.25, "auto")


def test_model_needs_a_source(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          architecture: llama
    """,
    )
    assert error_of(path) == (f"{path}:1: model: give model.name_or_path, or model.tokenizer for a freshly built model")


def test_missing_model_section(tmp_path):
    path = write(
        tmp_path,
        """
        train:
          epochs: 2
    """,
    )
    assert error_of(path) == f"{path}: missing required key 'model'"  # once without the file


def test_more_errors_are_counted(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          epochs: -1
          micro_batch_size: 0
          logging_steps: 0
    """,
    )
    # pydantic reports in schema field order: micro_batch_size comes before epochs
    assert error_of(path) == (
        f"{path}:5: train.micro_batch_size = 0: Input should be greater than 0 (and 2 more errors)"
    )


def test_validate_accepts_the_composed_defaults(tmp_path):
    config = validate(compose(write(tmp_path, SECTIONED)))
    assert config.train.optimizer.lr == 0.001
    assert str(config.output_path) == "runs/lmforge"


# --------------------------------------------------------------------------- file errors


def test_invalid_yaml_reports_file_and_line(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          epochs: 1
           lr: 3
    """,
    )
    assert error_of(path) == f"{path}:5: invalid YAML: mapping values are not allowed here"


def test_unclosed_flow_list_reports_file_and_line(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        train:
          report_to: [wandb
          epochs: 2
    """,
    )
    message = error_of(path)
    assert message.startswith(f"{path}:5: invalid YAML: ")


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_empty_file(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    assert error_of(path) == f"{path}: config file is empty"


def test_file_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- model\n- train\n")
    assert error_of(path) == f"{path}:1: a config file must be a mapping of keys"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: config file not found"


def test_section_must_be_a_mapping(tmp_path):
    path = write(tmp_path, SECTIONED + "broken: 3                   # 23\n")
    assert error_of(path, ["defaults", "broken"]) == f"{path}:23: section 'broken' must be a mapping"


# --------------------------------------------------------------------------- regressions


# Once origins were recorded for mapping keys only, so this reported the `datasets:` line (4).
def test_unknown_key_inside_a_list_item_points_at_its_own_line(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        data:
          datasets:
            - path: a.jsonl
              vla_split: 0.1
    """,
    )
    assert error_of(path) == (
        f"{path}:6: unknown key 'data.datasets.0.vla_split' (did you mean 'data.datasets.0.val_split'?)"
    )


# Once a misspelled top-level key made the file look sectioned ("name the sections to use").
def test_misspelled_top_level_key_in_a_plain_file_is_an_unknown_key(tmp_path):
    path = write(
        tmp_path,
        """
        model:
          tokenizer: tok
        trian:
          epochs: 2
    """,
    )
    assert error_of(path) == f"{path}:3: unknown key 'trian' (did you mean 'train'?)"


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_or_nan_numbers_are_errors(tmp_path, value):
    # lr: .inf would pass lr > 0 and train on nothing but NaNs
    path = write(tmp_path, f"model: {{tokenizer: tok}}\ntrain: {{optimizer: {{lr: {value}}}}}\n")
    assert "train.optimizer.lr" in (message := error_of(path)) and "finite number" in message
    assert message.startswith(f"{path}:2: ")
