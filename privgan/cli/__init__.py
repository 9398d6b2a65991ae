"""``privgan`` command: LightningCLI (fit / validate / test from recipes) plus sweep, curve, attack, report, faces, data."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

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
        log_run_config(trainer, {"recipe": recipe, "seed": recipe.get("seed_everything"), "versions": versions()})


class PrivganCLI(LightningCLI):
    """LightningCLI whose loggers default to the run's folder, so each run is self-contained."""

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


def run_lightning(args: list[str]) -> None:
    """LightningCLI over any LightningModule / LightningDataModule named in the recipe."""
    import lightning as L

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
    ev.add_argument("--model-path", default=None, help="weights file for onnx / facenet")
    ev.add_argument("--max-pairs", type=int, default=None, help="use only the first N pairs (quick check)")
    ev.add_argument("--out", default="runs/lfw", help="folder for lfw_<embedder>.json")
    a = p.parse_args(argv)
    from pathlib import Path

    from privgan.faces.lfw import eval_lfw_main

    eval_lfw_main(a.embedder, Path(a.out), a.max_pairs, a.model_path)
    return 0


def cmd_data(argv: list[str]) -> int:
    from privgan.data.fetch import main as fetch_main

    return fetch_main(argv)


def cmd_release_check(argv: list[str]) -> int:
    from privgan.cli.release_check import main as release_main

    return release_main(argv)


def cmd_report(argv: list[str]) -> int:
    from privgan.cli.report import main as report_main

    return report_main(argv)


def cmd_attack(argv: list[str]) -> int:
    from privgan.cli.attack import main as attack_main

    return attack_main(argv)


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "attack": cmd_attack,
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
        print("         attack NAME --checkpoint CKPT [--config RECIPE | --references DIR]  (run a registered attack post hoc;")
        print("                privgan attack --help lists them)")
        print("         report RUN_OR_SWEEP_DIR [--screenshot page.png]  (HTML page of the curve, verdicts, timings)")
        print("         release-check --checkpoint G --references TRAIN_IDS [--n 10000 --far 1e-3]  (exit 1 if any sample is blocked)")
    run_lightning(argv)
    return 0

