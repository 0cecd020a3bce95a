"""Load a pipeline: YAML files, ``include:`` fragments, ``--set`` overrides, validation, binding.

A pipeline file is plain YAML read safely (:mod:`medseg.config.strict_yaml`); nothing in it is
evaluated. It may list ``include:`` fragments (paths relative to the including file) that are
merged underneath it, and ``--set key=value`` overrides are merged on top. Relative paths written
in a YAML file are resolved against that file's folder; paths given with ``--set`` against the
current folder.

Loading returns the *resolved plan*: a complete, immutable :class:`PipelineConfig` whose component
arguments are bound through :mod:`medseg.registry` (every default shown). Intensity statistics
gathered at ingest make another new object (:func:`with_statistics`); nothing is changed in place.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from medseg.config import strict_yaml
from medseg.config.datasets import with_dataset_json
from medseg.config.models import PipelineConfig
from medseg.errors import CREDENTIALS_IN_URI, ConfigError, mask_credentials
from medseg.io.data_root import data_root

# Dotted keys that hold file-system paths (resolved relative to the file that sets them).
PATH_KEYS = ("output_dir", "data.root", "split.file", "fingerprint")


def load_pipeline(
    path: str | Path, overrides: list[str] | None = None, need_data: bool = False
) -> PipelineConfig:
    """Load, merge, validate and bind a pipeline file.

    Args:
        path: the pipeline YAML file.
        overrides: ``key=value`` settings merged on top, as ``--set`` gives them.
        need_data: refuse a ``data.root`` folder that does not exist (unless ``data.synthetic``
            writes it) before the components are bound, which imports MONAI: a run that cannot
            start says so in a second.

    Returns:
        The resolved, immutable configuration, every component argument bound.

    Raises:
        ConfigError: naming the file and key at fault.
        DataError: ``need_data`` and no ``data.root`` folder.

    Example:
        >>> cfg = load_pipeline("pipelines/demo.yaml", ["train.epochs=2"])
        >>> cfg.train.epochs
        2
    """
    path = Path(path)
    raw = _load_with_includes(path.resolve(), stack=())
    for item in overrides or []:
        key, value = _parse_override(item)
        if key in PATH_KEYS and isinstance(value, str):
            value = str(Path(value).expanduser().resolve())
        _set_dotted(raw, key, value)
    cfg = validate_dict(with_dataset_json(raw, str(path)), source=str(path))
    if need_data and cfg.data.synthetic is None:
        data_root(cfg.data.root)
    return bind_components(cfg)


def validate_dict(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    """Validate a merged settings tree; ConfigError naming every key at fault."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n" + format_validation_error(err)) from None


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short lists of plain values ([192, 256])."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(isinstance(v, str | int | float | bool) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def dump_config(cfg: PipelineConfig) -> str:
    """The fully resolved configuration, every default included, as YAML (loadable as a pipeline);
    the user and password of any URI in it are masked."""
    return mask_credentials(yaml.dump(cfg.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False))


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = strict_yaml.load(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    except strict_yaml.YamlLimitError as err:
        raise ConfigError(f"{path}: refused: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_short(str(err), 400)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _load_with_includes(
    path: Path, stack: tuple[Path, ...], allowed: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """A file merged over its includes. Includes must lie under the top pipeline's folder or a
    ``configs/`` folder beside it, unless the top file says ``allow_outside_includes: true``."""
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{path}: include cycle: {chain}")
    data = _load_yaml(path)
    _resolve_paths(data, path.parent)
    includes = data.pop("include", []) or []
    outside_ok = data.pop("allow_outside_includes", False) is True and not stack
    if isinstance(includes, str):
        includes = [includes]
    if not stack:
        allowed = () if outside_ok else (path.parent, path.parent.parent / "configs")
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = (path.parent / str(inc)).resolve()
        if allowed and not any(inc_path.is_relative_to(a.resolve()) for a in allowed):
            raise ConfigError(
                f"{path}: include '{inc}' lies outside the pipeline's folder and configs/; move it "
                "there, or set allow_outside_includes: true in the pipeline file"
            )
        if not inc_path.is_file():
            raise ConfigError(f"{path}: include '{inc}' not found (looked for {inc_path})")
        merged = deep_merge(merged, _load_with_includes(inc_path, (*stack, path), allowed))
    return deep_merge(merged, data)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for key in PATH_KEYS:
        parts = key.split(".")
        node: Any = data
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
            p = Path(node[parts[-1]]).expanduser()
            node[parts[-1]] = str(p if p.is_absolute() else (base / p).resolve())


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected key=value, for example train.epochs=2")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{item}': the key is empty")
    try:
        value = strict_yaml.load(text) if text.strip() else None
    except strict_yaml.YamlLimitError as err:
        raise ConfigError(f"--set {key}: refused: {err}") from None
    except yaml.YAMLError:
        value = text
    return key, value


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def bind_components(cfg: PipelineConfig) -> PipelineConfig:
    """A new configuration with every component's arguments checked and filled.

    ``validate --show`` shows them all. Network arguments derived from the data and transforms are
    left out, so a saved ``config.yaml`` follows overrides of those.

    Args:
        cfg: a validated configuration; it is not changed.

    Returns:
        The bound configuration, a new object.

    Raises:
        ConfigError: an unknown component or an argument its class does not take.
    """
    from medseg import registry as R  # imports MONAI: only when binding

    net_args = R.network_args(cfg.network)
    R.instantiate(R.network_class(cfg.model.name), net_args, "model.args")
    l_args = R.loss_args(cfg.train.loss)
    R.instantiate(R.loss_class(cfg.train.loss.name), l_args, "train.loss.args")
    sections: dict[str, Any] = {}
    for section in ("preprocess", "train"):
        chain = getattr(cfg.transforms, section)
        bound_chain = []
        for i, item in enumerate(chain):
            ((name, args),) = item.items()
            where = f"transforms.{section}[{i}].{name}"
            cls, bound = R.transform_args(name, args or {}, where)
            size = cfg.transforms.input_size
            if name in ("RandRotate90d", "Rotate90d") and len(set(size)) > 1:
                raise ConfigError(
                    f"{where}: 90-degree turns change the shape of non-square images "
                    f"(network input size {size}); use a square size or remove it"
                )
            R.instantiate(cls, bound, where)
            if name == "CTWindowd" and len(bound["windows"]) != cfg.data.in_channels:
                raise ConfigError(
                    f"{where}: stacks {len(bound['windows'])} window(s) as channels, so data.in_channels "
                    f"must be {len(bound['windows'])} (it is {cfg.data.in_channels})"
                )
            bound_chain.append({name: R.yaml_safe(bound)})
        sections[section] = bound_chain
    model_args = R.yaml_safe({k: v for k, v in net_args.items() if k not in R.DERIVED_NETWORK_ARGS})
    return _updated(
        cfg,
        {
            "transforms": sections,
            "model": {"args": model_args},
            "train": {"loss": {"args": R.yaml_safe(l_args)}},
        },
    )


def _updated(cfg: PipelineConfig, changes: dict[str, Any]) -> PipelineConfig:
    """A new validated configuration: ``changes`` (nested) merged over ``cfg``."""
    return PipelineConfig.model_validate(deep_merge(cfg.model_dump(), changes))


def with_statistics(cfg: PipelineConfig, stats: dict[str, Any]) -> PipelineConfig:
    """A new configuration with every ``ClipZScored`` statistic left at null filled from ``stats``.

    Args:
        cfg: the configuration; it is not changed.
        stats: ``lower``, ``upper``, ``mean`` and ``std`` gathered over the foreground.

    Returns:
        The configuration with the statistics recorded, so the saved plan holds them.
    """
    chain = []
    for item in cfg.transforms.preprocess:
        ((name, args),) = item.items()
        if name == "ClipZScored":
            args = {**args, **{k: stats[k] for k in STAT_KEYS if args.get(k) is None}}
        chain.append({name: args})
    return _updated(cfg, {"transforms": {"preprocess": chain}})


STAT_KEYS = ("lower", "upper", "mean", "std")


def missing_statistics(cfg: PipelineConfig) -> tuple[float, float] | None:
    """The percentiles of the first ``ClipZScored`` step whose statistics are unset, or None."""
    for item in cfg.transforms.preprocess:
        args = item.get("ClipZScored")
        if args is not None and any(args.get(k) is None for k in STAT_KEYS):
            low, high = (float(p) for p in args.get("percentiles", (0.5, 99.5)))
            return low, high
    return None


# ----------------------------------------------------------------------------- error messages


def format_validation_error(err: ValidationError) -> str:
    """One line per error: the dotted key, what is wrong, and the key meant when one is close."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            fields = fields_at(PipelineConfig, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
            prefix = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
            if close:
                hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?"
            else:
                hint = f"valid keys here: {', '.join(sorted(fields))}"
            lines.append(f"  {dotted}: unknown key, {hint}")
        elif e["type"] == "missing":
            lines.append(f"  {dotted}: required key is missing")
        else:
            msg = _short(e["msg"].removeprefix("Value error, "), 300)
            lines.append(f"  {dotted}: {msg}{shown_value(dotted, e.get('input'))}")
    return "\n".join(lines)


SECRET_KEYS = ("uri", "password", "secret", "token", "key")  # keys whose values are never shown


def shown_value(key: str, value: Any) -> str:
    """`` (got VALUE)`` for an error message: only for short scalars, never for keys that can
    carry credentials, and never a URI's user and password."""
    last = key.rsplit(".", 1)[-1].lower()
    if isinstance(value, dict | list | tuple) or any(word in last for word in SECRET_KEYS):
        return ""
    text = repr(value)
    if len(text) > 60 or CREDENTIALS_IN_URI.search(text):
        return ""
    return f" (got {text})"


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields of the (nested) model found at ``loc``; [] when there is none."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        sub = _model_in(current)
        if sub is None or part not in sub.model_fields:
            return []
        current = sub.model_fields[part].annotation
    sub = _model_in(current)
    return list(sub.model_fields) if sub is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
