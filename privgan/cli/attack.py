"""``privgan attack NAME --checkpoint PATH``: run a registered attack on a saved model, after training.

The recipe the model was trained with (--config, repeatable) gives the module class, the data
and the attack callback's settings, so the numbers are those the training run would log at that
checkpoint (membership's shadow models come from the checkpoint when the run kept them, else
they train checkpoint epoch + 1 epochs). --references (a folder with members/, heldout/,
nonmembers/, auxiliary/) replaces the recipe's data or stands in for it; --align, --min-face-prob
and --max-dropped set how that folder's photos are read (privgan.data.ReferenceFolder's align,
min_face_prob and max_dropped, as in a callback's references). The files are the callback's
(NAME/epoch_NNN.json, rows, scores, ROC, gallery) and a curve point at the checkpoint's step goes
into OUT/attack_curve.json, with ε and δ from the checkpoint's Opacus accountant. TorchScript /
torch.export (.pt2) generator files are attacked as step 0 by the GAN attacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import textwrap
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch

from privgan.attacks.registry import available_attacks, get_attack, make_config, run_attack
from privgan.attacks.result import Result
from privgan.faces.preprocess import ALIGN_METHODS, MIN_FACE_PROB


def _die(msg: str) -> NoReturn:
    """Stop with a one-line message (exit status 2)."""
    raise SystemExit(f"privgan attack: {msg}")


def attacks_help() -> str:
    """Every registered attack with its one-line summary and config fields (the --help epilog)."""
    lines = ["registered attacks (NAME):"]
    for name in available_attacks():
        spec = get_attack(name)
        fields = ", ".join(f"{f.name}={f.default if f.default is not dataclasses.MISSING else f.default_factory()!r}"
                           for f in dataclasses.fields(spec.config))
        lines += [f"  {name} ({spec.target} target): {spec.summary}",
                  textwrap.fill(f"--set fields: {fields}", width=100, initial_indent=" " * 6, subsequent_indent=" " * 8)]
    return "\n".join(lines)


def share(text: str) -> float:
    """A ``--max-dropped`` / ``--min-face-prob`` value: a number in [0, 1] (argparse names the option when it is not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``privgan attack``."""
    p = argparse.ArgumentParser(prog="privgan attack", description=__doc__, epilog=attacks_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attack", metavar="NAME", help="a registered attack (listed below)")
    p.add_argument("--checkpoint", required=True, help="Lightning .ckpt of a privgan module, or a TorchScript / .pt2 generator")
    p.add_argument("--config", "-c", action="append", default=[], help="the recipe the model was trained with (repeatable)")
    p.add_argument("--references", default=None, help="a references folder to attack with instead of the recipe's data")
    p.add_argument("--align", choices=ALIGN_METHODS, default=None,
                   help="how the references folder's photos become faces: auto (MTCNN alignment, and photos that are already "
                        "face crops taken whole; the default), mtcnn (MTCNN alignment only), none (every file is a face crop)")
    p.add_argument("--min-face-prob", type=share, default=None, metavar="P",
                   help=f"MTCNN's probability threshold for a references photo to count as a face (default {MIN_FACE_PROB})")
    p.add_argument("--max-dropped", type=share, default=None, metavar="SHARE",
                   help="the largest share of a references part's photos that may be dropped (no face, unreadable) before the "
                        "attack is refused (default 0.5; 1.0 attacks whatever is left)")
    p.add_argument("--out", default=None, help="folder for the files and attack_curve.json (default: the checkpoint's run "
                   "folder: the nearest one above it with a curve.json, else the one above checkpoints/, else the current one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="attack config override, YAML value (repeatable)")
    p.add_argument("--name", default=None, help="result name (sub-folder, curve key); default the recipe callback's or the attack's")
    p.add_argument("--seed", type=int, default=None, help="the attack config's seed (default: the recipe's setting)")
    p.add_argument("--device", default="cpu", help="torch device the model is attacked on (default cpu)")
    return p


def load_recipe(configs: list[str]) -> tuple[Any, Any, list[Any]]:
    """Model, datamodule (or None) and trainer callbacks of a recipe, instantiated by LightningCLI without running."""
    import lightning as L
    import yaml

    from privgan.cli import PrivganCLI

    for c in configs:
        if not Path(c).is_file():
            _die(f"--config {c!r}: no such file")
    has_data = any("data" in (yaml.safe_load(Path(c).read_text()) or {}) for c in configs)
    args = [x for c in configs for x in ("--config", c)] + ["--trainer.logger=false"]
    with warnings.catch_warnings():  # LightningCLI warns that sys.argv (privgan attack's own) is not what it parses
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = PrivganCLI(L.LightningModule, L.LightningDataModule if has_data else None, subclass_mode_model=True, subclass_mode_data=True,
                         run=False, args=args, save_config_callback=None)
    return cli.model, cli.datamodule, list(cli.trainer.callbacks)


def privacy_from_checkpoint(ckpt: dict) -> tuple[float, float | None]:
    """(ε, δ) of a privgan checkpoint from its Opacus accountant and DP settings; (inf, None) when not private."""
    from privgan.modules.dp_lifecycle import ACCOUNTANT_KEY

    dp = (ckpt.get("hyper_parameters") or {}).get("dp")
    if not dp:
        return math.inf, None
    state = ckpt.get(ACCOUNTANT_KEY)
    if state is None:
        return math.nan, float(dp["delta"])
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=dp.get("accountant", "prv"))
    accountant.load_state_dict(state)
    if len(accountant) == 0:
        return 0.0, float(dp["delta"])
    if any(noise == 0 for noise, _, _ in accountant.history):
        return math.inf, float(dp["delta"])
    return float(accountant.get_epsilon(delta=float(dp["delta"]))), float(dp["delta"])


def load_generator_file(path: Path) -> Callable[[int, torch.Generator], torch.Tensor]:
    """``sample(n, generator)`` in [0, 1] of a TorchScript or torch.export (.pt2) generator file."""
    if path.suffix != ".pt2":
        from privgan.cli.release_check import load_generator

        return load_generator(path)[0]
    program = torch.export.load(str(path))
    net, names = program.module(), set(program.graph_signature.user_inputs)
    shape = next(n.meta["val"].shape for n in program.graph.nodes if n.op == "placeholder" and n.name in names)
    batch, dim = int(shape[0]), int(shape[1])

    @torch.no_grad()
    def sample(n: int, g: torch.Generator) -> torch.Tensor:  # whole exported batches: its batch size may be fixed
        return torch.cat([net(torch.randn(batch, dim, generator=g)) for _ in range(-(-n // batch))])[:n]

    return sample


def load_module(path: Path, ckpt: dict, cls: type | None, kind: str) -> Any:
    """The module in a .ckpt: of the recipe's class, else the class it names (LightningCLI), else privgan's for ``kind``."""
    import lightning as L

    from privgan.modules import GAN, SplitClassifier

    if cls is None:
        cls = L.LightningModule if "_class_path" in (ckpt.get("hyper_parameters") or {}) else GAN if kind == "gan" else SplitClassifier
    try:
        return cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - name the file and what it was read as
        _die(f"--checkpoint {str(path)!r} does not load as a {cls.__name__} checkpoint ({type(e).__name__}: {e}); "
             "give --config with the recipe it was trained with")


def attack_callback(name: str, callbacks: list[Any], result_name: str | None) -> Any:
    """The recipe's callback for attack ``name`` (the one called ``result_name`` if several), else privgan's default one."""
    import privgan.callbacks as cbs

    mine = [c for c in callbacks if isinstance(c, cbs.AttackCallback) and c.attack == name]
    if mine:
        return next((c for c in mine if c.name == result_name), mine[0])
    cls = next((c for c in map(cbs.__dict__.get, cbs.__all__) if getattr(c, "attack", "") == name), None)
    return cls() if cls is not None else None


def default_out(checkpoint: Path) -> Path:
    """The checkpoint's run folder: the nearest above it with a curve.json, else the one above ``checkpoints/``, else cwd."""
    path = checkpoint.resolve()
    run = next((d for d in list(path.parents)[:5] if (d / "curve.json").exists()), None)
    return run or (path.parent.parent if path.parent.name == "checkpoints" else Path.cwd())


def add_point(curve: Path, *, step: int, epoch: int, epsilon: float, delta: float | None, name: str, result: Result,
              callbacks: list[Any]) -> None:
    """Append (or replace) ``name``'s Result at ``step`` in ``attack_curve.json``, utility as the recipe's curve reads it."""
    from privgan.callbacks import PrivacyUtilityCurve
    from privgan.reporting.points import CurvePoint, load_curve, save_curve

    curve_cb = next((c for c in callbacks if isinstance(c, PrivacyUtilityCurve)), None)
    key = curve_cb.utility_key if curve_cb else "utility/fd_face" if "fd_face" in result.values else "utility/val_acc"
    points = load_curve(curve) if curve.exists() else []
    old = next((p for p in points if p.step == step), None)
    point = old or CurvePoint(step=step, epoch=epoch, utility_key=key, utility=float(result.values.get(key.rsplit("/", 1)[-1], math.nan)),
                              utility_higher_is_better=curve_cb.utility_higher_is_better if curve_cb else "fd" not in key,
                              epsilon=epsilon, delta=delta)
    save_curve(curve, sorted([p for p in points if p.step != step] + [point.with_result(name, result)], key=lambda p: p.step))


def summary(result: Result, name: str, where: str, files: dict[str, Path], curve: Path) -> str:
    """One screen: verdict, headline with CI and chance, leaking signals, notes, files."""
    s = result.signals[result.headline]
    ci = f" [{s.ci[0]:.3g}, {s.ci[1]:.3g}]" if s.ci else ""
    chance = f", chance {s.chance:.3g}" if s.chance is not None else ""
    lines = [f"privgan attack {result.attack} ({name}) on {where}: {result.verdict.upper()}",
             f"  {result.headline} = {s.value:.3g}{ci} (95% CI){chance}; best sub-attack: {result.best or '-'}; "
             f"converged: {result.converged}; {result.seconds:.1f} s",
             f"  leaking signals: {', '.join(result.leaking) or 'none'}"]
    lines += [f"  note: {n}" for n in result.notes]
    lines += [f"  files: {', '.join(str(p) for p in files.values())}", f"  curve point: {curve}"]
    return "\n".join(lines)


def build_target(attack: str, kind: str, path: Path, ckpt: dict, cb: Any, model: Any, device: str) -> Any:
    """The attack target in ``path``: through the callback's (or privgan's) adapter for a .ckpt, a sampler for a generator file."""
    from privgan.targets import adapters
    from privgan.targets.kinds import GanTarget
    from privgan.targets.protocols import SampleableGenerator

    if not ckpt:
        if kind != "gan":
            _die(f"--checkpoint {str(path)!r} is a generator file; the {attack} attack needs a {kind} model in a Lightning .ckpt")
        try:
            return GanTarget(sample=load_generator_file(path))
        except (RuntimeError, ValueError) as e:
            _die(f"--checkpoint {str(path)!r} is not a TorchScript or torch.export generator: {e}")
    module = load_module(path, ckpt, type(model) if model is not None else None, kind).to(device).eval()
    held = f"--checkpoint {str(path)!r} holds a {type(module).__name__}"
    if kind != "gan" and isinstance(module, SampleableGenerator):
        _die(f"the {attack} attack needs a {kind} model; {held} (a generator)")
    try:
        return cb.target(module) if cb else getattr(adapters, f"{kind}_target")(module)
    except TypeError as e:
        _die(f"the {attack} attack needs a {kind} model; {held}: {e}")


def attack_config(attack: str, cb: Any, epoch: int, sets: list[str], seed: int | None) -> Any:
    """The callback's config for a run after ``epoch`` (or the defaults), with ``--set`` and ``--seed`` applied."""
    import yaml

    base = cb.run_config(epoch) if cb else make_config(attack)
    overrides = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            _die(f"--set {item!r} must look like KEY=VALUE (e.g. --set n_boot=200)")
        overrides[key.strip()] = yaml.safe_load(value)
    if seed is not None:
        overrides["seed"] = seed
    try:
        return make_config(attack, overrides)
    except (TypeError, ValueError) as e:
        _die(f"--set: {e}")


def folder_options(a: argparse.Namespace) -> dict[str, Any]:
    """The ReferenceFolder settings given on the command line (--align, --min-face-prob, --max-dropped)."""
    given = {"align": a.align, "min_face_prob": a.min_face_prob, "max_dropped": a.max_dropped}
    return {k: v for k, v in given.items() if v is not None}


def reference_folder(source: Any, size: int | None, options: dict[str, Any]) -> Any:
    """``source`` (a folder path, or the recipe callback's ReferenceFolder) as a ReferenceFolder with ``options`` applied."""
    from privgan.data.reference_folder import ReferenceFolder

    if isinstance(source, ReferenceFolder):
        kept = {"image_size": source.image_size, "align": source.align, "min_face_prob": source.min_face_prob,
                "max_dropped": source.max_dropped, "classes": source.classes, "cache_dir": source.cache_dir}
        return ReferenceFolder(source.root, **(kept | options))
    return ReferenceFolder(source, image_size=size or 64, **options)


def attacker_view(a: argparse.Namespace, needs: tuple[str, ...], cb: Any, datamodule: Any, ckpt: dict) -> Any:
    """The attacker's view from --references, the callback's references or the recipe's datamodule (set up for fit)."""
    from privgan.data.reference_folder import DroppedPhotosError, ReferenceFolder
    from privgan.targets.view import view_from

    source = a.references or (cb.references if cb else None) or datamodule
    if source is None:
        _die(f"no data to attack with: {'the recipe ' + ', '.join(a.config) + ' has no data section' if a.config else 'no --config'}"
             " and no --references DIR (a folder with members/, heldout/, nonmembers/, auxiliary/)")
    options = folder_options(a)
    folder = isinstance(source, (str, os.PathLike, ReferenceFolder))
    if options and not folder:
        _die(f"{', '.join('--' + k.replace('_', '-') for k in options)}: these set how a references folder is read, but this "
             f"attack reads the recipe's {type(source).__name__}; give --references DIR, or set the recipe's data.init_args instead")
    if source is datamodule:
        datamodule.setup("fit")
    size = (cb.image_size if cb else None) or (ckpt.get("datamodule_hyper_parameters") or {}).get("image_size")
    try:
        if folder and (options or not isinstance(source, ReferenceFolder)):
            source = reference_folder(source, size, options)
        view = view_from(source, needs=needs, image_size=size)
        view.require(needs, who=f"the {a.attack} attack")
    except DroppedPhotosError as e:
        _die(f"DroppedPhotosError: {e} (here: --align auto|none, --min-face-prob P, --max-dropped 1.0)")
    except (FileNotFoundError, TypeError, ValueError) as e:
        _die(f"{type(e).__name__}: {e}")
    return view


def main(argv: list[str]) -> int:
    """Load the model and the attacker's data, run the attack once, write its files and curve point, print the verdict."""
    from privgan.reporting.result_files import save_result

    a = parser().parse_args(argv)
    try:
        spec = get_attack(a.attack)
    except KeyError as e:
        _die(e.args[0])
    path = Path(a.checkpoint)
    if not path.is_file():
        _die(f"--checkpoint {str(path)!r}: no such file")
    model, datamodule, callbacks = load_recipe(a.config) if a.config else (None, None, [])
    cb = attack_callback(a.attack, callbacks, a.name)
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False) if path.suffix == ".ckpt" else {}
    epoch, step = int(ckpt.get("epoch", 0)), int(ckpt.get("global_step", 0))
    target = build_target(a.attack, spec.target, path, ckpt, cb, model, a.device)
    config = attack_config(a.attack, cb, epoch, a.set, a.seed)
    view = attacker_view(a, spec.needs, cb, datamodule, ckpt)
    state = (ckpt.get("callbacks") or {}).get(cb.state_key, {}) if cb is not None else {}
    resources = cb.resources_from_checkpoint(state, target, view, config) if cb is not None else {}
    result = run_attack(a.attack, target, view, config, resources=resources)
    name = a.name or (cb.name if cb else a.attack)
    out = Path(a.out) if a.out else default_out(path)
    files = save_result(result, out / name, f"epoch_{epoch:03d}")
    epsilon, delta = privacy_from_checkpoint(ckpt)
    add_point(out / "attack_curve.json", step=step, epoch=epoch, epsilon=epsilon, delta=delta, name=name, result=result,
              callbacks=callbacks)
    where = f"{path.name} (epoch {epoch}, step {step}, ε = {epsilon:.3g}" + (f" at δ = {delta:.3g})" if delta else ")")
    print(summary(result, name, where, files, out / "attack_curve.json"))
    return 0
