from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config.load import dump_config, load_pipeline, validate_dict
from medseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_pipeline_loads_and_starts_with_its_command(path: Path) -> None:
    cfg = load_pipeline(path)
    assert cfg.name
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# medseg run pipelines/{path.name}")


def test_fragments_are_merged_and_pipeline_wins(tmp_path: Path) -> None:
    (tmp_path / "frag.yaml").write_text("train: {epochs: 7, batch_size: 3}\nmodel: {name: SegResNet}\n")
    (tmp_path / "p.yaml").write_text(
        "include: [frag.yaml]\nname: x\noutput_dir: out\ndata: {root: data}\ntrain: {epochs: 2}\n"
    )
    cfg = load_pipeline(tmp_path / "p.yaml")
    assert cfg.train.epochs == 2 and cfg.train.batch_size == 3
    assert cfg.model.name == "SegResNet"
    # relative paths in a YAML file resolve against that file's folder
    assert cfg.data.root == (tmp_path / "data").resolve()
    assert cfg.output_dir == (tmp_path / "out").resolve()


def test_overrides_parse_yaml_values_and_resolve_paths_from_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "p.yaml").write_text("name: x\noutput_dir: out\ndata: {root: data}\n")
    monkeypatch.chdir(tmp_path.parent)
    cfg = load_pipeline(
        tmp_path / "p.yaml",
        ["train.epochs=3", "transforms.spatial_size=[64, 64]", "data.root=elsewhere", "split.folds=[0, 2]"],
    )
    assert cfg.train.epochs == 3
    assert cfg.transforms.spatial_size == [64, 64]
    assert cfg.data.root == (tmp_path.parent / "elsewhere").resolve()
    assert cfg.split.folds == [0, 2]


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\noutput_dir: out\ndata: {root: d}\ntrain: {epoch: 2}\n")
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key, did you mean train\.epochs\?"):
        load_pipeline(tmp_path / "p.yaml")


def test_unknown_top_level_key_and_bad_value_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        validate_dict({"name": "x", "output_dir": "o", "data": {"root": "d"}, "trian": {}, "seed": "abc"})
    text = str(info.value)
    assert "trian: unknown key, did you mean train?" in text
    assert "seed:" in text


def test_missing_required_key_is_reported() -> None:
    with pytest.raises(ConfigError, match="data: required key is missing"):
        validate_dict({"name": "x", "output_dir": "o"})


def test_component_arguments_are_bound_at_load_time(tmp_path: Path) -> None:
    base = "name: x\noutput_dir: out\ndata: {root: d}\n"
    (tmp_path / "a.yaml").write_text(base + "model: {name: UNet, args: {chanels: [4, 8]}}\n")
    with pytest.raises(
        ConfigError, match=r"model\.args\.chanels: UNet has no argument 'chanels', did you mean 'channels'"
    ):
        load_pipeline(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(base + "model: {name: Unet}\n")
    with pytest.raises(ConfigError, match="did you mean 'UNet'"):
        load_pipeline(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text(base + "train: {loss: {name: DiceCE, args: {lambda_dise: 1}}}\n")
    with pytest.raises(ConfigError, match="did you mean 'lambda_dice'"):
        load_pipeline(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text(base + "transforms: {train: [{RandFlipd: {prob: 0.5, axis: 0}}]}\n")
    with pytest.raises(ConfigError, match=r"transforms\.train\[0\]\.RandFlipd\.axis"):
        load_pipeline(tmp_path / "d.yaml")


def test_intensity_transform_on_label_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: x\noutput_dir: o\ndata: {root: d}\n"
        "transforms: {preprocess: [{NormalizeIntensityd: {keys: [image, label]}}]}\n"
    )
    with pytest.raises(ConfigError, match="labels are never normalised"):
        load_pipeline(tmp_path / "p.yaml")


def test_pretrained_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: x\noutput_dir: o\ndata: {root: d}\nmodel: {name: FlexibleUNet, args: {pretrained: true}}\n"
    )
    with pytest.raises(ConfigError, match="never downloaded"):
        load_pipeline(tmp_path / "p.yaml")


def test_config_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "p.yaml").write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\noutput_dir: o\ndata: {{root: d}}\n"
    )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(tmp_path / "p.yaml")
    assert not marker.exists()


def test_include_cycle_and_missing_include(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_pipeline(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("include: [nope.yaml]\n")
    with pytest.raises(ConfigError, match="include 'nope.yaml' not found"):
        load_pipeline(tmp_path / "c.yaml")


def test_resolved_config_shows_every_default() -> None:
    cfg = load_pipeline(ROOT / "pipelines" / "demo.yaml")
    text = dump_config(cfg)
    for key in ("val_fraction:", "patience:", "nsd_tolerance:", "num_res_units:", "lambda_ce:", "overlap:"):
        assert key in text
    assert "RandAffined:" in text and "cache_grid: false" in text  # transform defaults too
    assert "spatial_size: [96, 128]" in text


def test_resolved_config_reruns_as_a_pipeline(tmp_path: Path) -> None:
    """The config.yaml written into a run folder loads back to the same settings."""
    cfg = load_pipeline(ROOT / "pipelines" / "demo.yaml")
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    again = load_pipeline(tmp_path / "config.yaml")
    assert again.model_dump() == cfg.model_dump()


def test_rotate90_on_non_square_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: x\noutput_dir: o\ndata: {root: d}\n"
        "transforms: {spatial_size: [64, 96], train: [{RandRotate90d: {prob: 0.5}}]}\n"
    )
    with pytest.raises(ConfigError, match="non-square"):
        load_pipeline(tmp_path / "p.yaml")


def test_saved_config_follows_data_overrides(tmp_path: Path) -> None:
    """Network channels come from data settings on every load, not from the saved config."""
    cfg = load_pipeline(ROOT / "pipelines" / "demo.yaml")
    assert "in_channels" not in cfg.model.args
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    overrides = ["data.in_channels=1", "data.num_classes=3", "data.class_names=[a, b]"]
    again = load_pipeline(tmp_path / "config.yaml", overrides)
    from medseg.registry import network_args

    args = network_args(again.network)
    assert (args["in_channels"], args["out_channels"], args["spatial_dims"]) == (1, 3, 2)


def test_ct_pipeline_is_3d_with_picked_labels_and_patch_sizes() -> None:
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml")
    from medseg.registry import network_args

    assert cfg.transforms.spatial_dims == 3 and cfg.roi_size == cfg.transforms.patch_size
    assert network_args(cfg.network)["spatial_dims"] == 3
    assert list(cfg.data.labels or {}) == ["liver", "spleen", "kidneys"] and cfg.data.num_classes == 4
    assert [cfg.nsd_tolerance(k) for k in (1, 2, 3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["transforms.spacing=[1, 1]"], "not both"),
        (["transforms.spatial_size=null", "transforms.spacing=[1, 1, 1]"], "network input size is unset"),
        (["transforms.patch_size=[32, 32, 8]"], "same length"),
        (["data.labels={liver: 5, spleen: 1}"], "data.num_classes must be 3"),
        (["evaluate.nsd_tolerance=[1.0, 2.0]"], "2 values for 1 foreground classes"),
        (
            ["transforms.preprocess=[{CTWindowd: {windows: [soft_tissue, bone]}}]"],
            "data.in_channels must be 2",
        ),
        (["transforms.preprocess=[{CTWindowd: {windows: [liver]}}]"], "unknown window 'liver'"),
    ],
)
def test_grid_label_and_window_settings_are_checked(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_pipeline(ROOT / "pipelines" / "demo.yaml", overrides)


FRAGMENTS = sorted((ROOT / "configs").rglob("*.yaml"))


def _leaves(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


@pytest.mark.parametrize("path", FRAGMENTS, ids=[p.relative_to(ROOT).as_posix() for p in FRAGMENTS])
def test_every_shipped_fragment_validates_inside_a_pipeline(path: Path, tmp_path: Path) -> None:
    import yaml

    three_d = path.parent.name == "windows" or "3d" in path.stem
    base = ROOT / "pipelines" / ("ct.yaml" if three_d else "demo.yaml")
    (tmp_path / "p.yaml").write_text(f"allow_outside_includes: true\ninclude: [{base}, {path}]\n")
    cfg = load_pipeline(tmp_path / "p.yaml")
    fragment = yaml.safe_load(path.read_text())
    resolved = cfg.model_dump(mode="json")
    for key, value in _leaves({k: v for k, v in fragment.items() if k != "transforms"}).items():
        node: object = resolved
        for part in key.split("."):
            assert isinstance(node, dict), key
            node = node[part]
        assert node == value, key
    for section, items in (fragment.get("transforms") or {}).items():
        names = [next(iter(item)) for item in getattr(cfg.transforms, section)]
        assert names == [next(iter(item)) for item in items]


def test_the_resolved_plan_is_immutable_and_binding_makes_a_new_object() -> None:
    from pydantic import ValidationError

    from medseg.config.load import bind_components

    raw = validate_dict({"name": "x", "output_dir": "o", "data": {"root": "d"}})
    assert raw.model.args == {}
    bound = bind_components(raw)
    assert bound is not raw and raw.model.args == {}  # the input is left as it was
    assert bound.model.args["channels"] == [16, 32, 64, 128, 256]
    with pytest.raises(ValidationError, match="frozen"):
        bound.train.epochs = 3  # type: ignore[misc]


def test_statistics_make_a_new_plan() -> None:
    from medseg.config.load import missing_statistics, with_statistics

    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml")
    assert missing_statistics(cfg) == (0.5, 99.5)
    stats = {"lower": -100.0, "upper": 300.0, "mean": 50.0, "std": 80.0}
    filled = with_statistics(cfg, stats)
    assert missing_statistics(filled) is None and missing_statistics(cfg) == (0.5, 99.5)
    args = next(item["ClipZScored"] for item in filled.transforms.preprocess if "ClipZScored" in item)
    assert {k: args[k] for k in stats} == stats


def test_class_names_name_the_classes_and_are_checked() -> None:
    cfg = load_pipeline(ROOT / "pipelines" / "isic.yaml")
    assert cfg.class_names == {1: "skin_lesion"}
    plain = load_pipeline(ROOT / "pipelines" / "isic.yaml", ["data.class_names=null"])
    assert plain.class_names == {1: "class_1"}
    for bad, message in [
        ("[a, b]", "names 2 class\\(es\\) but data.num_classes is 2"),
        ("['1st']", "letters, digits and '_'"),
        ("[mean]", "not 'mean'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_pipeline(ROOT / "pipelines" / "isic.yaml", [f"data.class_names={bad}"])
    with pytest.raises(ConfigError, match="named by data.labels already"):
        load_pipeline(ROOT / "pipelines" / "ct.yaml", ["data.class_names=[a, b, c]"])
