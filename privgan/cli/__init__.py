"""``privgan`` command: LightningCLI (fit / validate / test from recipes) plus sweep, curve, attack, report, faces, data."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback


def versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on (recorded in every run's config)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("privgan", "torch", "torchvision", "lightning", "opacus", "wandb", "opencv-python-headless", "facenet-pytorch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class RecipeAsRunConfig(SaveConfigCallback):
    """Saves config.yaml in the run folder and gives the whole recipe, the seed and versions to every logger (W&B run config)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        import yaml

        from privgan.reporting.wandb_helpers import log_run_config

        recipe = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        recipe.pop("config", None)  # the file names the recipe was read from
        recipe.pop("overwrite", None)  # how this fit was started, not part of the recipe
        log_run_config(trainer, {"recipe": recipe, "seed": recipe.get("seed_everything"), "versions": versions()})


class PrivganCLI(LightningCLI):
    """LightningCLI whose loggers default to the run's folder, so each run is self-contained.

    Checkpoints go to ``<run folder>/checkpoints/`` whenever a ModelCheckpoint leaves ``dirpath``
    null (so ``--ckpt_path=last`` finds ``last.ckpt`` whatever the logger), and are written
    atomically (:class:`privgan.reporting.local_files.AtomicCheckpointIO`), with the random state
    (:class:`privgan.callbacks.RandomState`, added to every fit). ``fit`` locks the run
    folder for its duration and refuses to start over a folder whose curve has points unless it
    resumes them (``--ckpt_path``) or is told ``--overwrite``.
    """

    _lock: Any = None

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--overwrite", type=bool, nargs="?", const=True, default=False,
                            help="start over in a run folder that holds an earlier run's curve points (they are replaced); "
                                 "to continue that run instead, give --ckpt_path=last")

    def _subcommand_config(self) -> Any:
        return self.config.get(self.subcommand, self.config) if self.subcommand else self.config

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        stable_checkpoints(trainer)
        keep_random_state(trainer)
        return trainer

    def before_fit(self) -> None:
        """Lock the run folder; refuse to overwrite an earlier run's curve unless resuming or told --overwrite."""
        from lightning.pytorch.utilities import rank_zero_only

        from privgan.callbacks.curve import PrivacyUtilityCurve, earlier_steps
        from privgan.reporting.local_files import RunFolderBusy, RunFolderLock

        cfg = self._subcommand_config()
        overwrite = bool(cfg.get("overwrite"))
        curves = [cb for cb in self.trainer.callbacks if isinstance(cb, PrivacyUtilityCurve)]
        for cb in curves:
            cb.overwrite = cb.overwrite or overwrite
        if rank_zero_only.rank != 0:
            return
        root = Path(self.trainer.default_root_dir)
        try:
            self._lock = RunFolderLock(root).acquire(share_with_children=True)  # ddp_spawn ranks run inside it
        except RunFolderBusy as e:
            raise SystemExit(f"privgan fit: {e}") from None
        if overwrite or cfg.get("ckpt_path") is not None:
            return
        for cb in curves:
            out = Path(cb.out_dir) if cb.out_dir else root
            n = len(earlier_steps(out / "curve.json"))
            if n:
                raise SystemExit(
                    f"privgan fit: run folder {str(out)!r} already holds {n} privacy-utility curve point(s) of an earlier run; "
                    "starting over would overwrite them. Continue that run from its checkpoint with "
                    "`privgan fit --config ... --ckpt_path=last`, start over on purpose with `--overwrite`, "
                    "or give this run another --trainer.default_root_dir")

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = cfg.get("trainer")
        if trainer is None:
            return
        root = trainer.get("default_root_dir") or "."
        loggers = trainer.get("logger")
        if not isinstance(loggers, list):
            loggers = [loggers]
        for lg in loggers:
            init = getattr(lg, "init_args", None)
            if init is not None and "save_dir" in init and init.get("save_dir") in (None, ".", ""):
                init["save_dir"] = root


def stable_checkpoints(trainer: Any) -> None:
    """Checkpoints in ``<run folder>/checkpoints/`` (not under a logger's run id), written atomically.

    Every ModelCheckpoint whose ``dirpath`` is null gets that folder, so ``--ckpt_path=last`` and
    ``privgan sweep --skip-done`` find ``last.ckpt``; the plain checkpoint writer becomes
    :class:`~privgan.reporting.local_files.AtomicCheckpointIO` (a user's own plugin is kept).
    """
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch.callbacks import ModelCheckpoint

    from privgan.reporting.local_files import AtomicCheckpointIO

    folder = os.path.join(str(trainer.default_root_dir), "checkpoints")
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
            cb.dirpath = os.path.realpath(folder)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def keep_random_state(trainer: Any) -> None:
    """A :class:`~privgan.callbacks.RandomState` first among the callbacks (unless the recipe has one).

    Checkpoints then carry the random state, and a fit resumed from one (``--ckpt_path=last``,
    ``privgan sweep --skip-done``) shuffles and draws noise as the uninterrupted fit would have.
    """
    from privgan.callbacks.rng import RandomState

    if not any(isinstance(cb, RandomState) for cb in trainer.callbacks):
        trainer.callbacks.insert(0, RandomState())


def config_files(args: list[str]) -> list[str]:
    """The recipe files named by ``--config X``, ``--config=X`` or ``-c X`` in ``args``."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("--config", "-c") and i + 1 < len(args):
            out.append(args[i + 1])
            i += 1
        elif a.startswith(("--config=", "-c=")):
            out.append(a.split("=", 1)[1])
        i += 1
    return out


def check_recipe_file(spec: str) -> None:
    """Exit with a message naming the file when a recipe is missing, a folder, binary, empty, bad YAML or not a mapping."""
    import yaml

    p = Path(spec).expanduser()
    if not p.exists():
        if ":" in spec or "{" in spec:  # jsonargparse also takes the recipe's text itself
            return
        raise SystemExit(f"privgan: recipe file {spec!r} does not exist")
    if p.is_dir():
        raise SystemExit(f"privgan: recipe {spec!r} is a folder; give a YAML file (e.g. recipes/split_lfw.yaml)")
    data = p.read_bytes()
    try:
        if b"\x00" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\x00"), data.index(b"\x00") + 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SystemExit(f"privgan: recipe {spec!r} is not a text YAML file (binary data at byte {e.start}); "
                         "give a recipe such as recipes/split_lfw.yaml") from None
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SystemExit(f"privgan: recipe {spec!r} is not valid YAML: {e}") from None
    if recipe is None:
        raise SystemExit(f"privgan: recipe {spec!r} is empty; a recipe sets keys such as trainer:, model: and data: "
                         "(see recipes/split_lfw.yaml and docs/recipes.md)")
    if not isinstance(recipe, dict):
        raise SystemExit(f"privgan: recipe {spec!r} holds a YAML {type(recipe).__name__}, not a mapping of keys "
                         "(trainer:, model:, data:, ...)")


def run_lightning(args: list[str]) -> None:
    """LightningCLI over any LightningModule / LightningDataModule named in the recipe."""
    import lightning as L

    for spec in config_files(args):
        check_recipe_file(spec)
    PrivganCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if args == sys.argv[1:] else args,
        save_config_callback=RecipeAsRunConfig,
        save_config_kwargs={"overwrite": True},
    )


def cmd_sweep(argv: list[str]) -> int:
    from privgan.cli.sweep import main as sweep_main

    return sweep_main(argv)


def cmd_curve(argv: list[str]) -> int:
    from privgan.cli.sweep import curve_main

    return curve_main(argv)


def cmd_faces(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privgan faces", description="Face-model utilities.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("eval-lfw", help="LFW 10-fold pairs protocol for an identity embedder")
    ev.add_argument("--embedder", default="sface", help="sface | onnx | facenet")
    ev.add_argument("--embedder-path", "--model-path", dest="embedder_path", default=None,
                    help="model file: required for onnx (an .onnx embedder), a state dict for facenet (--model-path: same)")
    ev.add_argument("--max-pairs", type=int, default=None, help="use only the first N pairs (quick check)")
    ev.add_argument("--out", default="runs/lfw", help="folder for lfw_<embedder>.json")
    a = p.parse_args(argv)
    from pathlib import Path

    from privgan.faces.lfw import eval_lfw_main
    from privgan.paths import MissingDataError

    if a.embedder == "onnx" and a.embedder_path is None:
        ev.error("--embedder onnx needs --embedder-path pointing to an .onnx face embedding model (e.g. MobileFaceNet.onnx)")
    try:
        eval_lfw_main(a.embedder, Path(a.out), a.max_pairs, a.embedder_path)
    except (ValueError, ImportError, MissingDataError) as e:
        print(f"privgan faces eval-lfw: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_data(argv: list[str]) -> int:
    if argv[:1] == ["split"]:
        from privgan.cli.data_split import main as split_main

        return split_main(argv[1:])
    from privgan.data.fetch import main as fetch_main

    return fetch_main(argv)


def cmd_release_check(argv: list[str]) -> int:
    from privgan.cli.release_check import main as release_main

    return release_main(argv)


def cmd_report(argv: list[str]) -> int:
    from privgan.cli.report import main as report_main

    return report_main(argv)


def cmd_prior(argv: list[str]) -> int:
    from privgan.cli.prior import main as prior_main

    return prior_main(argv)


def cmd_attack(argv: list[str]) -> int:
    from privgan.cli.attack import main as attack_main

    return attack_main(argv)


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "attack": cmd_attack,
    "prior": cmd_prior,
    "report": cmd_report,
    "release-check": cmd_release_check,
    "sweep": cmd_sweep,
    "curve": cmd_curve,
    "faces": cmd_faces,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``privgan`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:]) or 0
    if argv and argv[0] in ("-h", "--help"):
        print("privgan: fit | validate | test (LightningCLI, e.g. privgan fit --config recipes/split_lfw.yaml)")
        print("         sweep --config X.yaml --grid KEY=V1,V2 ... | curve RUN_DIR ... | faces eval-lfw | data fetch lfw")
        print("         data split --config RECIPE --out manifest.json  (draw a recipe's split without training)")
        print("         attack NAME --checkpoint CKPT [--config RECIPE | --references DIR]  (run a registered attack post hoc;")
        print("                privgan attack --help lists them)")
        print("         prior --config GAN_RECIPE ...  (train the attacks' face prior once, cached by its recipe; prints its checkpoint)")
        print("         report RUN_OR_SWEEP_DIR [--screenshot page.png]  (HTML page of the curve, verdicts, timings)")
        print("         release-check --checkpoint G --references TRAIN_IDS [--n 10000 --far 1e-3]  (exit 1 if any sample is blocked)")
    run_lightning(argv)
    return 0

