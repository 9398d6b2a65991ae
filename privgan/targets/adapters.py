"""Adapters from modules (privgan's or anyone's) to attack targets: ``gan_target``, ``split_target``, ``classifier_target``.

A GAN needs a way to draw samples (``sample(n, generator)``, a ``sample_fn``, or a generator
attribute plus latent size) and, for LOGAN, a discriminator; a split model needs the features
it sends (``client(x)``, or the name of the sub-module whose output crosses the split, read by
a forward hook). Each adapter fails with a message that says what the module lacks.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from privgan.targets.kinds import ClassifierTarget, GanTarget, SplitTarget
from privgan.targets.protocols import SampleableGenerator

#: ``sample_fn(pl_module, n, generator) -> N x 3 x H x W in [0, 1]``.
SampleFn = Callable[[nn.Module, int, torch.Generator], torch.Tensor]
#: Output / input value ranges a foreign GAN may use.
RANGES = ("tanh", "unit")


def _check_range(output_range: str) -> None:
    if output_range not in RANGES:
        raise ValueError(f"output_range must be one of {RANGES} ('tanh' = [-1, 1], 'unit' = [0, 1]), got {output_range!r}")


def _attr(module: nn.Module, path: str, what: str) -> Any:
    """``module.a.b`` for ``path='a.b'``, or a TypeError naming what is missing and what exists."""
    obj: Any = module
    for part in path.split("."):
        if not hasattr(obj, part):
            children = ", ".join(n for n, _ in module.named_children()) or "none"
            raise TypeError(f"{type(module).__name__} has no attribute {path!r} ({what}); its sub-modules: {children}")
        obj = getattr(obj, part)
    return obj


def _latent_dim(module: nn.Module, latent_dim: int | None) -> int:
    if latent_dim is not None:
        return latent_dim
    for holder in (module, getattr(module, "hparams", {})):
        for key in ("latent_dim", "z_dim", "nz"):
            v = holder.get(key) if isinstance(holder, dict) else getattr(holder, key, None)
            if isinstance(v, int):
                return v
    raise TypeError(
        f"{type(module).__name__}: cannot tell the latent size (no latent_dim / z_dim / nz attribute or hparam); pass latent_dim"
    )


#: Latent distributions a foreign generator may have been trained on.
LATENTS = ("normal", "uniform")


def generator_sampler(generator_attr: str = "generator", *, latent_dim: int | None = None, output_range: str = "tanh",
                      latent_distribution: str = "normal") -> SampleFn:
    """A ``sample_fn`` that feeds latents to ``module.<generator_attr>`` and maps its output to [0, 1].

    ``latent_distribution``: ``normal`` (N(0, I), privgan's and most GANs') or ``uniform``
    (U(-1, 1) per coordinate); feeding the wrong one saturates the samples.
    """
    _check_range(output_range)
    if latent_distribution not in LATENTS:
        raise ValueError(f"latent_distribution must be one of {LATENTS}, got {latent_distribution!r}")

    def sample(module: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        net = _attr(module, generator_attr, "the generator network")
        dim = _latent_dim(module, latent_dim)
        device = generator.device if generator is not None else torch.device("cpu")
        if latent_distribution == "normal":
            z = torch.randn(n, dim, generator=generator, device=device)
        else:
            z = torch.rand(n, dim, generator=generator, device=device) * 2 - 1
        z = z.to(next(net.parameters()).device)
        x = net(z)
        return (x + 1) / 2 if output_range == "tanh" else x

    return sample


def resolve_sampler(module: nn.Module, sample_fn: SampleFn | None, generator_attr: str | None, latent_dim: int | None,
                    output_range: str, who: str, latent_distribution: str = "normal") -> Callable[[int, torch.Generator], torch.Tensor]:
    """``fn(n, generator)`` from, in order: ``sample_fn``, ``generator_attr``, the module's own ``sample``."""
    if sample_fn is not None:
        return lambda n, g: sample_fn(module, n, g)
    if generator_attr is not None:
        fn = generator_sampler(generator_attr, latent_dim=latent_dim, output_range=output_range,
                               latent_distribution=latent_distribution)
        return lambda n, g: fn(module, n, g)
    if isinstance(module, SampleableGenerator):
        return module.sample
    raise TypeError(
        f"{type(module).__name__} has no sample(n, generator) and no sample_fn or generator_attr was given: {who} needs "
        "generated faces (set generator_attr='generator' and latent_dim, or pass "
        "sample_fn=lambda module, n, generator: ... returning N x 3 x H x W in [0, 1])"
    )


def discriminator_scorer(module: nn.Module, discriminator_attr: str | None, input_range: str = "tanh",
                         batch_size: int = 256) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``scores(images in [0, 1]) -> N`` logits from the module's ``discriminator_scores`` or ``module.<discriminator_attr>``."""
    if discriminator_attr is None:
        return getattr(module, "discriminator_scores", None)
    _check_range(input_range)
    net = _attr(module, discriminator_attr, "the discriminator network")

    @torch.no_grad()
    def scores(images: torch.Tensor) -> torch.Tensor:
        device = next(net.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device)
            out.append(net(x * 2 - 1 if input_range == "tanh" else x).reshape(len(x), -1)[:, 0].float().cpu())
        return torch.cat(out)

    return scores


class _Stop(Exception):
    """Raised by the split hook once the transmitted features are in hand (skips the server part)."""


class HookedClient:
    """``client(x)``: the output of sub-module ``layer`` of ``module``, read with a forward hook.

    The rest of the forward pass is cut short, so a white-box attack differentiates through the
    client part only. ``layer`` is a name from ``module.named_modules()``.
    """

    def __init__(self, module: nn.Module, layer: str) -> None:
        names = dict(module.named_modules())
        if layer not in names or layer == "":
            near = [n for n in names if n and n.split(".")[0] == layer.split(".")[0]][:12] or [n for n in names if n][:12]
            raise TypeError(f"{type(module).__name__} has no sub-module {layer!r} to split at; some it has: {', '.join(near)}")
        self.module, self.layer, self._sub = module, layer, names[layer]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            box.append(out[0] if isinstance(out, (tuple, list)) else out)
            raise _Stop

        handle = self._sub.register_forward_hook(hook)
        try:
            self.module(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not box:
            raise RuntimeError(f"{type(self.module).__name__}.forward never ran sub-module {self.layer!r}")
        return box[0]


def resolve_client(module: nn.Module, split_layer: str | None, who: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The split model's ``client(x)``: a hook on ``split_layer`` if given, else the module's own ``client``."""
    if split_layer is not None:
        return HookedClient(module, split_layer)
    if callable(getattr(module, "client", None)):
        return module.client
    raise TypeError(
        f"{type(module).__name__} has no client(x) and no split_layer was given: {who} needs the features sent across "
        "the split (set split_layer to the name of the sub-module whose output is transmitted, e.g. 'backbone.layer1')"
    )


def _device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None) if isinstance(module, nn.Module) else None
    return p.device if p is not None else torch.device("cpu")


def _transmit(module: nn.Module) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """The module's ``transmit(z, generator)`` (seeded noise), ``transmit(z)``, or the identity."""
    fn = getattr(module, "transmit", None)
    if fn is None:
        return lambda z, generator=None: z
    import inspect

    try:
        takes_generator = "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_generator = False
    return fn if takes_generator else (lambda z, generator=None: fn(z))


def split_target(module: nn.Module, *, split_layer: str | None = None) -> SplitTarget:
    """A split model as an attack target: its client (or the output of ``split_layer``) and its transmit."""
    client = resolve_client(module, split_layer, "the inversion attack")
    return SplitTarget(client=client, transmit=_transmit(module) if split_layer is None else (lambda z, generator=None: z),
                       device=_device(module))


def gan_target(module: nn.Module, *, sample_fn: SampleFn | None = None, generator_attr: str | None = None,
               latent_dim: int | None = None, output_range: str = "tanh", discriminator_attr: str | None = None,
               batch_size: int = 256, latent_distribution: str = "normal") -> GanTarget:
    """A generator as an attack target: how to sample it and, where it exists, its discriminator."""
    fn = resolve_sampler(module, sample_fn, generator_attr, latent_dim, output_range, "this attack", latent_distribution)
    return GanTarget(sample=fn, discriminator_scores=discriminator_scorer(module, discriminator_attr, output_range),
                     device=_device(module), batch_size=batch_size)


def classifier_target(module: nn.Module, *, shadow_factory: Callable[[], nn.Module] | None = None) -> ClassifierTarget:
    """A classifier as an attack target: its forward as logits, and a factory of untrained copies for shadow models."""
    from privgan.attacks.membership import fresh_copy

    factory = shadow_factory or getattr(module, "make_network", None) or (lambda: fresh_copy(module))
    lr = float(getattr(module, "hparams", {}).get("lr", 1e-3)) if hasattr(module, "hparams") else 1e-3
    return ClassifierTarget(logits=module, make_network=factory, lr=lr, device=_device(module))
