"""Search spaces: one declarative YAML file per space in search_spaces/, read and checked here.

A space file::

    description: VRNN: Gaussian or Student-t prior, KL warm-up, learning rate   # one line
    models:                          # model names, or variants: a model plus fixed settings
      - vrnn
      - srnn_gm: {model: srnn, ss_epochs: 50, generation_mode_eval: true}
    fixed: {corpus: asterisk, h_dim: 128, epochs: 100}     # Config fields, data ones included
    search:                          # what Optuna samples, one Config field each
      prior: {choice: [gaussian, student_t]}
      student_df: {uniform: [2.0, 30.0], when: {prior: student_t}}   # only with that prior
      lr: {loguniform: [1.0e-4, 3.0e-3]}
      z_dim: {int: [4, 64], log: true}
    seeds: [0, 1, 2]                 # optional: every configuration is run once per seed
    asha: {max_t: 100, grace_period: 10, reduction_factor: 3}   # optional: no ASHA without it
    num_samples: 30                  # configurations to try (optional without `search`)
    budgets:                         # smoke, small, full: each overrides any Config field,
      smoke: {epochs: 3, max_t: 3, grace_period: 1, num_samples: 4}   # num_samples, seeds, asha
      small: {epochs: 20, search: {kl_warmup_epochs: {int: [0, 8]}}}  # and searched ranges
      full: {}

A trial's settings are, later ones winning: Config defaults, `fixed`, the budget, the
command line's `--set` (`Space.with_settings`), the variant's settings, the sampled values. A searched field may appear nowhere else, so
what a file says is always what runs.

Every problem is a `SpaceError` naming the file, the field and what is allowed:
``search_spaces/x.yaml: search.prior.choice: 'cauchy' is not allowed; choose one of ...``.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .config import MODEL_NAMES, Config, ConfigError, all_fields, allowed_values, field_type

def _spaces_dir() -> Path:
    """The search_spaces/ folder: shipped inside the package when installed from a wheel,
    beside it in a checkout (where an editable install also finds it)."""
    package = Path(__file__).resolve().parent
    shipped = package / "search_spaces"
    return shipped if shipped.is_dir() else package.parent / "search_spaces"


SPACES_DIR = _spaces_dir()
BUDGETS = ("smoke", "small", "full")
TOP_LEVEL_KEYS = ("description", "models", "fixed", "search", "seeds", "asha", "num_samples", "budgets")
ASHA_KEYS = ("max_t", "grace_period", "reduction_factor")
KINDS = ("choice", "uniform", "loguniform", "int")
BUDGET_KEYS = ("num_samples", "seeds", "search", *ASHA_KEYS)  # besides Config fields


class SpaceError(ValueError):
    """A search space file that cannot be used: the message names file, field and what is allowed."""


@dataclass(frozen=True)
class Param:
    """One searched Config field.

    kind is choice (`choices`), uniform or loguniform (floats in [low, high]) or int
    (integers in [low, high], log-spaced when `log`). `when` = (parameter, values): the
    field is sampled only in trials where that parameter took one of those values.
    """
    name: str
    kind: str
    choices: tuple = ()
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    when: Optional[tuple[str, tuple]] = None

    def describe(self) -> str:
        if self.kind == "choice":
            text = f"choice {list(self.choices)}"
        else:
            text = f"{self.kind} [{self.low:g}, {self.high:g}]" + (" log" if self.log and self.kind == "int" else "")
        if self.when:
            text += f"  when {self.when[0]} in {list(self.when[1])}"
        return text


@dataclass(frozen=True)
class Variant:
    """A model as the space runs it: its name (a model name or e.g. srnn_gm) and its settings."""
    name: str
    overrides: dict  # Config fields; always holds the model's `name`


@dataclass(frozen=True)
class Space:
    """A space resolved for one budget: everything needed to start the search."""
    name: str
    path: Path
    budget: str
    description: str
    variants: tuple[Variant, ...]
    fixed: dict  # Config fields from `fixed` and the budget
    params: tuple[Param, ...]
    seeds: tuple[int, ...]  # empty: each configuration runs once, with the fixed seed
    asha: Optional[dict]  # max_t, grace_period, reduction_factor; None: no early stopping by ASHA
    num_samples: int  # configurations

    @property
    def trials(self) -> int:
        """Trials in all: every configuration once per seed."""
        return self.num_samples * max(1, len(self.seeds))

    def config(self, variant: Variant, sampled: Optional[dict] = None) -> Config:
        return Config.from_dict({**self.fixed, **variant.overrides, **(sampled or {})})

    def with_settings(self, settings: dict) -> "Space":
        """This space with more fixed Config fields (`tune_runner.py --set key=value`, values
        typed or strings), on top of the budget; checked as the file's own fields are."""
        searched = {p.name for p in self.params}
        for key in settings:
            if key not in all_fields():
                raise SpaceError(f"--set {key}: unknown Config field; valid fields: {', '.join(sorted(all_fields()))}")
            if key in searched:
                raise SpaceError(f"--set {key}: the space searches it; a field is either searched or fixed")
            setters = [v.name for v in self.variants if key in v.overrides]
            if setters:
                raise SpaceError(f"--set {key}: set by the space's model list ({', '.join(setters)})")
        if "seed" in settings and self.seeds:
            raise SpaceError(f"--set seed: the space runs every configuration once per seed {list(self.seeds)}")
        try:
            typed = Config.from_dict(self.fixed).replace(**settings).flat()
            fixed = {**self.fixed, **{key: typed[key] for key in settings}}
            for variant in self.variants:
                epochs = Config.from_dict({**fixed, **variant.overrides}).train.epochs
                if self.asha and self.asha["max_t"] > epochs:
                    raise ConfigError(f"epochs: {epochs} is below ASHA's max_t {self.asha['max_t']} in this space")
        except ConfigError as e:
            raise SpaceError(f"--set: {e}") from None
        return dataclasses.replace(self, fixed=fixed)


    def with_models(self, names: list[str]) -> "Space":
        """This space running only the given rows of its model list (`--models`), in its order."""
        known = [v.name for v in self.variants]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise SpaceError(f"--models {','.join(names)}: {', '.join(unknown) or 'none given'} not in the space's "
                             f"model list; choose from {', '.join(known)}")
        chosen = tuple(v for v in self.variants if v.name in names)
        # a space that searches nothing runs each row once
        return dataclasses.replace(self, variants=chosen, num_samples=self.num_samples if self.params else len(chosen))


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def space_path(name: str) -> Path:
    """The file of a shipped space, or `name` itself when it is a path to a .yaml file."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise SpaceError(f"{name}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
        return path
    path = SPACES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SpaceError(f"unknown space '{name}'; valid spaces: {', '.join(space_names())} "
                         f"(or the path of a .yaml file)")
    return path


def descriptions() -> dict[str, str]:
    """Every shipped space's one-line description (a broken file says so instead)."""
    out = {}
    for name in space_names():
        try:
            out[name] = load_space(name).description
        except SpaceError as e:
            out[name] = f"(invalid: {e})"
    return out


def load_space(name: str, budget: str = "full") -> Space:
    """Reads and checks a space (a shipped name or a .yaml path) and resolves it for `budget`."""
    path = space_path(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return _Reader(path).space(raw, budget)


class _Reader:
    """Checks one file; every error it raises starts with the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, where: str, message: str) -> SpaceError:
        return SpaceError(f"{self.path}: {where}: {message}")

    def space(self, raw: Any, budget: str) -> Space:
        if not isinstance(raw, dict):
            raise self.error("(top level)", f"a space is a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
        self.keys("(top level)", raw, TOP_LEVEL_KEYS, required=("description", "models", "budgets"))
        if budget not in BUDGETS:
            raise SpaceError(f"unknown budget '{budget}'; choose one of {', '.join(BUDGETS)}")

        description = raw["description"]
        if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
            raise self.error("description", "must be one line of text")
        budgets = self.budgets(raw["budgets"])
        chosen = budgets[budget]

        fixed = self.config_fields("fixed", raw.get("fixed") or {}, Config())
        base = Config.from_dict(fixed)
        budget_fields = {k: v for k, v in chosen.items() if k not in BUDGET_KEYS}
        fixed.update(self.config_fields(f"budgets.{budget}", budget_fields, base))
        base = Config.from_dict(fixed)

        variants = self.variants(raw["models"], base)
        search = dict(self.mapping("search", raw.get("search") or {}))
        for name, other in budgets.items():  # a budget's own ranges for fields the space searches, all checked
            ranges = self.mapping(f"budgets.{name}.search", other.get("search") or {})
            for field in ranges:
                if field not in search:
                    raise self.error(f"budgets.{name}.search.{field}", "the space does not search it; a budget "
                                     f"can give its own range only to a searched field ({', '.join(search)})")
            if name != budget:
                self.params({**search, **ranges}, fixed, variants)
        params = self.params({**search, **(chosen.get("search") or {})}, fixed, variants)

        seeds = self.seeds("seeds", raw["seeds"]) if raw.get("seeds") is not None else ()
        if "seeds" in chosen:
            seeds = self.seeds(f"budgets.{budget}.seeds", chosen["seeds"])
        if seeds and "seed" in fixed:
            raise self.error("seeds", "the space lists seeds and also fixes `seed`; keep one of them")

        asha = self.asha(raw.get("asha"), chosen, budget)
        for variant in variants:
            epochs = Config.from_dict({**fixed, **variant.overrides}).train.epochs
            if asha and asha["max_t"] > epochs:
                raise self.error("asha.max_t", f"{asha['max_t']} exceeds the {epochs} epochs of {variant.name} "
                                 f"under budget '{budget}'; max_t must be <= epochs")

        num_samples = chosen.get("num_samples", raw.get("num_samples"))
        where = f"budgets.{budget}.num_samples" if "num_samples" in chosen else "num_samples"
        if num_samples is None:
            if params:
                raise self.error("num_samples", "required when the space searches; a positive integer")
            num_samples = len(variants)
        self.positive_int(where, num_samples)

        return Space(name=self.path.stem, path=self.path, budget=budget, description=description.strip(),
                     variants=variants, fixed=fixed, params=params, seeds=seeds, asha=asha,
                     num_samples=num_samples)

    def keys(self, where: str, mapping: dict, allowed, required=()) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.error(f"{where}.{key}" if where != "(top level)" else str(key),
                                 f"unknown key; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in mapping:
                raise self.error(where, f"'{key}' is missing; required: {', '.join(required)}")

    def mapping(self, where: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self.error(where, f"must be a mapping, got {value!r}")
        return value

    def config_fields(self, where: str, values: Any, base: Config) -> dict:
        """Checks Config fields one at a time on top of `base`, so an error names its field."""
        values = self.mapping(where, values)
        cfg = base
        for key, value in values.items():
            cfg = self.with_field(f"{where}.{key}", cfg, key, value)
        return {key: cfg.flat()[key] for key in values}

    def with_field(self, where: str, cfg: Config, key: str, value: Any) -> Config:
        if key not in all_fields():
            raise self.error(where, f"unknown Config field; valid fields: {', '.join(sorted(all_fields()))}")
        try:
            return cfg.replace(**{key: value})
        except ConfigError as e:
            raise self.error(where, str(e)) from None

    def budgets(self, raw: Any) -> dict[str, dict]:
        raw = self.mapping("budgets", raw)
        self.keys("budgets", raw, BUDGETS, required=BUDGETS)
        out = {}
        for name in BUDGETS:
            budget = self.mapping(f"budgets.{name}", raw[name] or {})
            for key in budget:
                if key not in BUDGET_KEYS and key not in all_fields():
                    raise self.error(f"budgets.{name}.{key}", "unknown key; allowed: "
                                     f"{', '.join(BUDGET_KEYS)} or a Config field ({', '.join(sorted(all_fields()))})")
            out[name] = budget
        return out

    def variants(self, raw: Any, base: Config) -> tuple[Variant, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error("models", f"a non-empty list of model names ({', '.join(MODEL_NAMES)}) "
                             "or variants {name: {model: <model>, <field>: <value>, ...}}")
        variants = []
        for i, item in enumerate(raw):
            where = f"models[{i}]"
            if isinstance(item, str):
                if item not in MODEL_NAMES:
                    raise self.error(where, f"unknown model '{item}'; choose one of {', '.join(MODEL_NAMES)} "
                                     "or define a variant {name: {model: <model>, ...}}")
                variants.append(Variant(item, {"name": item}))
                continue
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error(where, "a model name or a one-key mapping {variant_name: {model: <model>, ...}}")
            (name, settings), = item.items()
            where = f"models.{name}"
            settings = dict(self.mapping(where, settings))
            if name in MODEL_NAMES:
                raise self.error(where, "a variant needs a name of its own, not a model name "
                                 f"({', '.join(MODEL_NAMES)})")
            if "name" in settings:
                raise self.error(f"{where}.name", "give the variant's model as `model`")
            model = settings.pop("model", None)
            if model not in MODEL_NAMES:
                raise self.error(f"{where}.model", f"'{model}' is not a model; choose one of {', '.join(MODEL_NAMES)}")
            overrides = {"name": model, **self.config_fields(where, settings, base.replace(name=model))}
            variants.append(Variant(str(name), overrides))
        names = [v.name for v in variants]
        for name in names:
            if names.count(name) > 1:
                raise self.error("models", f"'{name}' is listed twice; each model or variant once")
        return tuple(variants)

    def params(self, raw: Any, fixed: dict, variants: tuple[Variant, ...]) -> tuple[Param, ...]:
        raw = self.mapping("search", raw)
        params = {}
        for name, spec in raw.items():
            where = f"search.{name}"
            if name not in all_fields():
                raise self.error(where, f"unknown Config field; valid fields: {', '.join(sorted(all_fields()))}")
            if name in fixed:
                raise self.error(where, "is also fixed (in `fixed` or the budget); a field is either searched or fixed")
            for variant in variants:
                if name in variant.overrides:
                    raise self.error(where, f"is also set by variant {variant.name}; a field is either searched or fixed")
            spec = self.mapping(where, spec)
            self.keys(where, spec, (*KINDS, "log", "when"))
            kinds = [k for k in KINDS if k in spec]
            if len(kinds) != 1:
                raise self.error(where, f"needs exactly one distribution; choose one of {', '.join(KINDS)}")
            kind = kinds[0]
            if "log" in spec and (kind != "int" or not isinstance(spec["log"], bool)):
                raise self.error(f"{where}.log", "only `log: true|false` with an int distribution "
                                 "(use loguniform for floats)")
            cfg = Config.from_dict({**fixed, **variants[0].overrides})
            if kind == "choice":
                param = Param(name, kind, choices=self.choices(f"{where}.choice", spec["choice"], cfg, name))
            else:
                low, high = self.bounds(f"{where}.{kind}", kind, spec[kind], cfg, name)
                if spec.get("log") and low < 1:
                    raise self.error(f"{where}.log", f"a log-scaled int needs low >= 1, got {low}")
                param = Param(name, kind, low=low, high=high, log=kind == "loguniform" or spec.get("log", False))
            params[name] = param
        conditional = [name for name, spec in raw.items() if "when" in spec]
        for name in conditional:
            when = self.condition(f"search.{name}.when", raw[name]["when"], params, conditional)
            params[name] = dataclasses.replace(params[name], when=when)
        return tuple(params.values())

    def choices(self, where: str, values: Any, cfg: Config, name: str) -> tuple:
        allowed = allowed_values(name)
        if not isinstance(values, list) or not values:
            hint = f"; allowed values: {', '.join(map(str, allowed))}" if allowed else ""
            raise self.error(where, f"a non-empty list of values{hint}")
        out = []
        for value in values:
            if allowed is not None and value not in allowed:
                raise self.error(where, f"'{value}' is not allowed; choose one of {', '.join(map(str, allowed))}")
            out.append(self.with_field(where, cfg, name, value).flat()[name])
        if len(set(out)) != len(out):
            raise self.error(where, f"lists a value twice: {values}")
        return tuple(out)

    def bounds(self, where: str, kind: str, values: Any, cfg: Config, name: str) -> tuple:
        hint = _field_type(name)
        wanted = int if kind == "int" else float
        if hint is not wanted:
            other = "int" if hint is int else "uniform or loguniform" if hint is float else "choice"
            raise self.error(where, f"{name} is of type {getattr(hint, '__name__', hint)}; "
                             f"{kind} needs a {wanted.__name__} field (use {other})")
        if not isinstance(values, list) or len(values) != 2:
            raise self.error(where, f"[low, high], two {'integers' if kind == 'int' else 'numbers'}")
        try:
            # YAML 1.1 reads 1e-4 (no dot) as a string: accept any number spelled out
            low, high = (_number(v, wanted) for v in values)
        except (TypeError, ValueError):
            raise self.error(where, f"{values} are not two {'integers' if kind == 'int' else 'numbers'}") from None
        if low >= high:
            raise self.error(where, f"low {low} must be below high {high}")
        if kind == "loguniform" and low <= 0:
            raise self.error(where, f"loguniform needs low > 0, got {low}")
        for value in (low, high):
            self.with_field(where, cfg, name, value)
        return low, high

    def condition(self, where: str, raw: Any, params: dict[str, Param], conditional: list[str]) -> tuple[str, tuple]:
        """A `when` names an unconditional choice parameter and some of its values."""
        raw = self.mapping(where, raw)
        usable = [p.name for p in params.values() if p.kind == "choice" and p.name not in conditional]
        allowed = ", ".join(usable) or "(none: the space searches no unconditional choice)"
        if len(raw) != 1:
            raise self.error(where, f"one condition {{parameter: value or [values]}}; parameters: {allowed}")
        (on, values), = raw.items()
        if on not in usable:
            problem = "is not a searched parameter" if on not in params else "is not an unconditional choice"
            raise self.error(f"{where}.{on}", f"{problem}; a condition names one of: {allowed}")
        target = params[on]
        values = tuple(values) if isinstance(values, list) else (values,)
        for value in values:
            if value not in target.choices:
                raise self.error(f"{where}.{on}", f"'{value}' is not one of its choices: "
                                 f"{', '.join(map(str, target.choices))}")
        return on, values

    def seeds(self, where: str, raw: Any) -> tuple[int, ...]:
        if (not isinstance(raw, list) or not raw
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw)
                or len(set(raw)) != len(raw)):
            raise self.error(where, f"a non-empty list of distinct non-negative integers, got {raw!r}")
        return tuple(raw)

    def asha(self, raw: Any, budget: dict, budget_name: str) -> Optional[dict]:
        overrides = {k: budget[k] for k in ASHA_KEYS if k in budget}
        if raw is None:
            if overrides:
                raise self.error(f"budgets.{budget_name}.{next(iter(overrides))}",
                                 "the space has no `asha` section to override; add one or remove this key")
            return None
        raw = self.mapping("asha", raw)
        self.keys("asha", raw, ASHA_KEYS, required=ASHA_KEYS)
        asha = {**raw, **overrides}
        for key in ASHA_KEYS:
            where = f"budgets.{budget_name}.{key}" if key in overrides else f"asha.{key}"
            if key == "reduction_factor":
                value = asha[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 < value < math.inf:
                    raise self.error(where, f"a number above 1 (ASHA keeps 1/reduction_factor of each rung), "
                                     f"got {value!r}")
            else:
                self.positive_int(where, asha[key])
        if asha["grace_period"] > asha["max_t"]:
            raise self.error("asha.grace_period", f"{asha['grace_period']} exceeds max_t {asha['max_t']}; "
                             "must be <= max_t")
        return asha

    def positive_int(self, where: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(where, f"a positive integer, got {value!r}")


def _field_type(name: str):
    hint = field_type(name)
    return Literal if typing.get_origin(hint) is Literal else hint


def _number(value: Any, kind: type):
    if isinstance(value, bool):
        raise ValueError(value)
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ValueError(value)
        return value
    return float(value)
