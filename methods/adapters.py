"""Low-rank adapters beside frozen Linear / Conv2d layers, switched on by forward hooks.

An adapter adds ``scale * (alpha / rank) * up(down(x))`` to a layer's output (LoRA's form; for a
Conv2d, ``down`` is a convolution with the layer's own kernel, stride and padding and ``up`` a 1x1
convolution). The base weights never change: an adapter is a set of tensors of its own, which a
method either merges into the weights (``merged_deltas``: a plain weight edit) or keeps apart and
applies at sampling time with a scale per image (``active(scale=...)`` with a vector: SPM's gate).

    adapters = Adapters.around(pipe.unet, adapter_targets(pipe.unet), rank=1, generator=g)
    with adapters.active():            # scale 1 for every image
        out = pipe.unet(z, t, encoder_hidden_states=cond).sample
    with adapters.active(torch.tensor([1.0, 0.2])):   # image 0 at 1, image 1 at 0.2
        ...
    tensors = adapters.tensors()       # {"<module>.down": A, "<module>.up": B}: what an edit saves
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from bench.core.errors import EraselabError


def adapter_targets(unet) -> list[str]:
    """Every Linear and Conv2d inside every Transformer2DModel of ``unet`` (SPM's placement:
    proj_in, proj_out, both attentions' projections and the feed-forward layers)."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    names = []
    for name, module in unet.named_modules():
        if isinstance(module, Transformer2DModel):
            names += [f"{name}.{sub}" for sub, layer in module.named_modules()
                      if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d))]
    return names


class Adapters:
    """Rank-``rank`` adapters on named layers of one module (``down`` and ``up`` per layer)."""

    def __init__(self, root, down: dict, up: dict, alpha: float, rank: int):
        self.root, self.down, self.up = root, down, up
        self.alpha, self.rank = alpha, rank
        self.layers = {name: root.get_submodule(name) for name in down}

    @classmethod
    def around(cls, root, names: list[str], rank: int, generator: torch.Generator, alpha: float = 1.0):
        """New adapters: ``down`` kaiming-uniform (a = sqrt 5, as nn.Linear initialises), ``up``
        zeros, so the adapted model starts as the base model."""
        down, up = {}, {}
        for name in names:
            layer = root.get_submodule(name)
            weight = layer.weight
            if isinstance(layer, torch.nn.Conv2d):
                shape_down = (rank, layer.in_channels // layer.groups, *layer.kernel_size)
                shape_up = (layer.out_channels, rank, 1, 1)
            else:
                shape_down, shape_up = (rank, layer.in_features), (layer.out_features, rank)
            fan_in = math.prod(shape_down[1:])
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a = sqrt(5): gain^2 = 1/3
            a = (torch.rand(shape_down, generator=generator) * 2 - 1) * bound
            down[name] = a.to(device=weight.device, dtype=torch.float32).requires_grad_(True)
            up[name] = torch.zeros(shape_up, device=weight.device, dtype=torch.float32, requires_grad=True)
        return cls(root, down, up, alpha, rank)

    @classmethod
    def from_tensors(cls, root, tensors: dict, alpha: float, rank: int, where: str = "adapter"):
        """Adapters saved by ``tensors()``; ``where`` names the source in an error."""
        names = sorted({key.rsplit(".", 1)[0] for key in tensors})
        down, up = {}, {}
        for name in names:
            if f"{name}.down" not in tensors or f"{name}.up" not in tensors:
                raise EraselabError(f"{where}: adapter {name!r} lacks its down or up tensor")
            try:
                layer = root.get_submodule(name)
            except AttributeError:
                raise EraselabError(f"{where}: adapter {name!r} names no layer of this model") from None
            a, b = tensors[f"{name}.down"], tensors[f"{name}.up"]
            if a.shape[1] * (a[0, 0].numel()) != layer.weight[0].numel() or b.shape[0] != layer.weight.shape[0]:
                raise EraselabError(f"{where}: adapter {name!r} has shapes {tuple(a.shape)} / "
                                    f"{tuple(b.shape)}, which do not fit the layer {tuple(layer.weight.shape)}")
            down[name] = a.to(layer.weight.device, torch.float32)
            up[name] = b.to(layer.weight.device, torch.float32)
        return cls(root, down, up, alpha, rank)

    def parameters(self) -> list[torch.Tensor]:
        return [t for name in self.down for t in (self.down[name], self.up[name])]

    def tensors(self) -> dict:
        out = {}
        for name in self.down:
            out[f"{name}.down"] = self.down[name].detach().clone()
            out[f"{name}.up"] = self.up[name].detach().clone()
        return out

    def _residual(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layer, a, b = self.layers[name], self.down[name], self.up[name]
        if isinstance(layer, torch.nn.Conv2d):
            hidden = F.conv2d(x.float(), a, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            return F.conv2d(hidden, b)
        return F.linear(F.linear(x.float(), a), b)

    @contextmanager
    def active(self, scale=1.0):
        """The adapters on, for the ``with`` block. ``scale``: a number, or one value per image;
        a batch of m x N rows (classifier-free guidance stacks the unconditional and conditional
        halves) gives image i's value to rows i, N + i, ...."""
        factor = self.alpha / self.rank

        def hook_for(name):
            def hook(module, inputs, output):
                extra = self._residual(name, inputs[0]) * factor
                if torch.is_tensor(scale):
                    rows = output.shape[0]
                    if rows % scale.shape[0]:
                        raise EraselabError(f"adapter scale has {scale.shape[0]} values for a batch of {rows}")
                    per_row = scale.repeat(rows // scale.shape[0]).to(extra.device, extra.dtype)
                    extra = extra * per_row.view(-1, *([1] * (extra.dim() - 1)))
                else:
                    extra = extra * scale
                return output + extra.to(output.dtype)
            return hook

        handles = [self.layers[name].register_forward_hook(hook_for(name)) for name in self.down]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def merged_deltas(self, scale: float = 1.0) -> dict:
        """Layer name -> the weight change that merging the adapter at ``scale`` makes."""
        factor = scale * self.alpha / self.rank
        out = {}
        for name, layer in self.layers.items():
            a, b = self.down[name].detach(), self.up[name].detach()
            if isinstance(layer, torch.nn.Conv2d):
                delta = torch.einsum("or,rihw->oihw", b[:, :, 0, 0], a)
            else:
                delta = b @ a
            out[name] = (delta * factor).to(layer.weight.dtype)
        return out
