"""Hostile and careless pipeline files: YAML 1.1 traps, alias bombs, deep nesting, bad encodings,
includes that reach outside, and secrets in messages, dumps and MLflow params."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medseg.config.load import dump_config, load_pipeline
from medseg.errors import ConfigError, mask_credentials

from ..conftest import ROOT

DEMO = ROOT / "pipelines" / "demo.yaml"


def pipeline(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"include: [{DEMO}]\nallow_outside_includes: true\n" + textwrap.dedent(body))
    return path


def test_duplicate_keys_are_an_error(tmp_path):
    path = pipeline(tmp_path, "train:\n  epochs: 3\nseed: 1\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="key 'train' given twice"):
        load_pipeline(path)


def test_leading_zero_integers_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'010' with a leading zero"):
        load_pipeline(pipeline(tmp_path, "train:\n  epochs: 010\n"))


@pytest.mark.parametrize("word", ["yes", "on", "true"])
def test_booleans_where_a_number_is_expected_are_refused(tmp_path, word):
    with pytest.raises(ConfigError, match="train.epochs|epochs: expected a number"):
        load_pipeline(pipeline(tmp_path, f"train:\n  epochs: {word}\n"))


def test_yes_no_are_not_booleans_but_true_false_are(tmp_path):
    cfg = load_pipeline(pipeline(tmp_path, "train:\n  amp: false\n"))
    assert cfg.train.amp is False
    with pytest.raises(ConfigError, match="train.amp"):
        load_pipeline(pipeline(tmp_path, "train:\n  amp: maybe\n"))


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """Nine levels of nine aliases (387 million strings once expanded); run under a 2 GiB address
    space limit so a regression fails instead of exhausting the machine."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + f"include: [{DEMO}]\nallow_outside_includes: true\nname: *i\n")
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from medseg.config.load import load_pipeline\n"
        "from medseg.errors import ConfigError\n"
        f"try:\n    load_pipeline({str(path)!r})\nexcept ConfigError as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert "more than 100000 values" in proc.stdout and len(proc.stdout) < 500


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested more than"):
        load_pipeline(path)


def test_non_utf8_and_byte_order_mark(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_pipeline(bad)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + f"include: [{DEMO}]\nallow_outside_includes: true\nseed: 5\n".encode())
    assert load_pipeline(bom).seed == 5


def test_includes_stay_inside_the_pipeline_folder_and_configs(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text("seed: 1\n")
    study = tmp_path / "study"
    study.mkdir()
    (study / "p.yaml").write_text(f"include: [../elsewhere/secret.yaml, {DEMO}]\n")
    with pytest.raises(ConfigError, match="outside the pipeline's folder and configs/"):
        load_pipeline(study / "p.yaml")
    # the shipped pipelines include ../configs/...: allowed
    assert load_pipeline(ROOT / "pipelines" / "isic.yaml").model.name


URI = "postgresql://ann:s3cret@db.example:5432/mlflow"


def test_credentials_never_appear_in_errors_dumps_or_params(tmp_path):
    assert mask_credentials(URI) == "postgresql://***@db.example:5432/mlflow"
    path = pipeline(tmp_path, f"tracking:\n  uri: {URI}\n  enabled: 7\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert "s3cret" not in str(err.value) and "tracking.enabled" in str(err.value)
    # a cross-field check sees the whole raw config: it is never printed
    path = pipeline(tmp_path, f"tracking:\n  uri: {URI}\nevaluate:\n  nsd_tolerance: [1, 2, 3]\n")
    with pytest.raises(ConfigError, match="nsd_tolerance") as err:
        load_pipeline(path)
    assert "s3cret" not in str(err.value) and "db.example" not in str(err.value)
    cfg = load_pipeline(pipeline(tmp_path, "seed: 3\n"), [f"tracking.uri={URI}", "tracking.enabled=false"])
    dumped = dump_config(cfg)
    assert "s3cret" not in dumped and "postgresql://***@db.example" in dumped


def test_long_values_are_not_echoed(tmp_path):
    path = pipeline(tmp_path, f"train:\n  epochs: {'x' * 5000}\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert "train.epochs" in str(err.value) and "xxxxxxxxxx" not in str(err.value)


def test_the_cli_masks_credentials_in_what_it_prints(tmp_path):
    path = pipeline(tmp_path, f"tracking:\n  uri: {URI}\n")
    cmd = [sys.executable, "-m", "medseg", "validate", str(path), "--show"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr and "postgresql://***@db.example" in proc.stdout


def test_a_killed_synthetic_generation_leaves_no_partial_set(tmp_path, monkeypatch):
    from medseg.data import synthetic
    from medseg.pipeline import stages

    cfg = load_pipeline(DEMO, [f"data.root={tmp_path / 'data'}", "data.synthetic.n_cases=6"])
    real = synthetic.render_case
    calls = {"n": 0}

    def dies_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_case", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        stages.generate_synthetic(cfg)
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".data.partial-*"))
    monkeypatch.setattr(synthetic, "render_case", real)
    stale = tmp_path / ".data.partial-99999"  # what SIGKILL leaves: no finally ran
    stale.mkdir()
    (stale / "half.jpg").write_bytes(b"\xff\xd8")
    cases, bad = stages.ingest(cfg, tmp_path / "run")
    assert len(cases) == 6 and not bad and not stale.exists()
