"""Pure-Python configs: a config is a Python file whose dicts use ``type=`` with the class object itself.

``load_config(path)`` runs the file and returns its public names; ``build(spec)`` instantiates nested
``dict(type=Class, **kwargs)`` bottom-up and names the closest valid argument when a key is wrong.
"""

from __future__ import annotations

import difflib
import inspect
import runpy


class ConfigError(ValueError):
    pass


def load_config(path) -> dict:
    """A config file's public names; a relative path missing here is looked up in the project
    (perception.paths), so ``configs/tiny.py`` works from any directory."""
    from perception.paths import resolve

    path = resolve(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    ns = runpy.run_path(str(path))
    cfg = {k: v for k, v in ns.items() if not k.startswith("_") and not inspect.ismodule(v)
           and not inspect.isclass(v) and not inspect.isfunction(v)}
    cfg["_path"] = str(path)
    return cfg


def build(spec):
    """Instantiate ``dict(type=Class, **kwargs)`` recursively (lists and plain dicts are walked too)."""
    if isinstance(spec, dict):
        if "type" in spec:
            kwargs = {k: build(v) for k, v in spec.items() if k != "type"}
            cls = spec["type"]
            if not callable(cls):
                raise ConfigError(f"type={cls!r} is not a class or function (configs use the object, not a name)")
            check_kwargs(cls, kwargs)
            return cls(**kwargs)
        return {k: build(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)) and any(isinstance(v, dict) for v in spec):
        return type(spec)(build(v) for v in spec)
    return spec


def check_kwargs(cls, kwargs: dict, where: str | None = None) -> None:
    """Raise ConfigError for keys ``cls`` does not take, naming the closest valid one."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    _reject_unknown(where or getattr(cls, "__name__", str(cls)), kwargs, valid)


def _reject_unknown(where: str, given, valid) -> None:
    for k in given:
        if k not in valid:
            close = difflib.get_close_matches(k, list(valid), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(valid)}"
            raise ConfigError(f"{where}: unknown config key {k!r}{hint}")


def check_section(name: str, given: dict, valid: dict) -> dict:
    """Merge a plain config section over its defaults, rejecting unknown keys with the closest valid name."""
    _reject_unknown(name, given, valid)
    return {**valid, **given}


DATA_DEFAULTS = dict(version="v1.0-mini", train_split="mini_train", val_split="mini_val")


def data_section(cfg: dict, overrides: str = "") -> dict:
    """A config's ``data`` section (nuScenes mini's version and splits by default) with a command line's
    ``--override-data k=v,...`` over it, e.g. ``version=v1.0-trainval,train_split=train,val_split=val`` for a
    dataroot of more than 10 scenes; unknown keys are rejected."""
    return check_section("data", {**(cfg.get("data") or {}), **parse_overrides(overrides)}, DATA_DEFAULTS)


def parse_overrides(text: str) -> dict:
    """A command line's ``k=v,k=v`` -> {k: v}, integers and decimals as numbers, true / false as booleans,
    the rest as strings."""
    out = {}
    for kv in filter(None, (x.strip() for x in text.split(","))):
        k, _, v = kv.partition("=")
        v = v.strip()
        if v.lower() in ("true", "false"):
            out[k.strip()] = v.lower() == "true"
            continue
        try:
            out[k.strip()] = int(v)
        except ValueError:
            try:
                out[k.strip()] = float(v)
            except ValueError:
                out[k.strip()] = v
    return out
