"""A k-sparse autoencoder (TopK SAE) on one layer of a CLIP text encoder, and reading that layer.

Used by concept-steerers (methods/concept_steerers.py) and trained for the mini world by
``eraselab miniworld train sae`` (bench/miniworld/train_sae.py). The model, for a token's
residual-stream vector x (d_in):

  pre(x)    = W_enc (x - b_pre) + b_lat                       (n_latents)
  encode(x) = keep the k largest entries of pre(x), ReLU them, zero the rest
  decode(z) = W_dec z + b_pre
  dense(x)  = ReLU(pre(x))                                     (no top-k: the steering code)

The decoder's columns are kept at unit norm. Training minimises the reconstruction MSE divided
by the data's variance plus ``auxk_coef`` times the aux-k loss: the residual x - x_hat rebuilt
from the ``auxk`` largest pre-activations of the latents that have not fired for a while
(dead latents), which gives those latents a gradient again.

On disk an SAE is one safetensors file with the tensors ``encoder.weight`` (n_latents, d_in),
``decoder.weight`` (d_in, n_latents), ``pre_bias`` (d_in) and ``latent_bias`` (n_latents), the
names of the authors' state dict, so their checkpoint converts with ``safetensors.torch.save_file``
on its ``state_dict``. Metadata (optional): one key, ``eraselab_ksae``, a JSON object with ``k``,
``auxk``, ``layer`` (one key, because safetensors writes several in no fixed order, and a
retrained SAE must be the same file byte for byte). Nothing is unpickled.

    from methods.ksae import KSparseAutoencoder, layer_outputs
    sae = KSparseAutoencoder.load("datasets/miniworld/v1/sae/sae.safetensors", d_in=128)
    h = layer_outputs(pipe.text_encoder, ids, layer=2)          # (B, L, 128)
    x_hat = sae.decode(sae.encode(h))
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from bench.core.errors import EraselabError, quoted, shorten

FORMAT = "eraselab-ksae-1"
META_KEY = "eraselab_ksae"
TENSORS = ("encoder.weight", "decoder.weight", "pre_bias", "latent_bias")
EXPECTED = ("a safetensors k-SAE with encoder.weight (n, d), decoder.weight (d, n), "
            "pre_bias (d) and latent_bias (n)")


class KSparseAutoencoder(nn.Module):
    """A TopK sparse autoencoder; ``k`` None: only ``dense``/``steering`` work (a file without k)."""

    def __init__(self, d_in: int, n_latents: int, k: int | None, auxk: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if k is not None and not 1 <= k <= n_latents:
            raise ValueError(f"k must be in [1, {n_latents}], got {k}")
        self.d_in, self.n_latents, self.k, self.auxk = d_in, n_latents, k, auxk
        self.layer, self.metadata = None, {}  # what a loaded file records (``load``)
        self.encoder = nn.Linear(d_in, n_latents, bias=False)
        self.decoder = nn.Linear(n_latents, d_in, bias=False)
        self.pre_bias = nn.Parameter(torch.zeros(d_in))
        self.latent_bias = nn.Parameter(torch.zeros(n_latents))
        with torch.no_grad():
            # nn.Linear's default range, drawn from the caller's generator (reproducible); the
            # decoder starts as the encoder's transpose ("tied" init), columns at unit norm.
            bound = 1.0 / d_in ** 0.5
            weight = torch.rand(n_latents, d_in, generator=generator) * 2 * bound - bound
            self.encoder.weight.copy_(weight)
            self.decoder.weight.copy_(weight.T)
            self.normalise_decoder()

    # --- the model -------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x - self.pre_bias) + self.latent_bias

    def top_k(self, pre: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ReLU'd values, indices) of the ``k`` largest pre-activations per token."""
        k = k or self.k
        if k is None:
            raise EraselabError("this SAE file records no k; it can steer (dense codes) but not encode")
        values, indices = torch.topk(pre, k, dim=-1)
        return torch.relu(values), indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents with at most k non-zero entries per token (the top k, ReLU'd)."""
        pre = self.pre_activations(x)
        values, indices = self.top_k(pre)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(pre(x)) with no top-k: every positive latent (what concept steering uses)."""
        return torch.relu(self.pre_activations(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) + self.pre_bias

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``decode`` of the latents ``values`` at ``indices`` (N, k) without the dense code: k
        decoder columns per token instead of all of them (what makes training cheap)."""
        columns = torch.nn.functional.embedding(indices, self.decoder.weight.T)  # (N, k, d_in)
        out = torch.bmm(values.unsqueeze(-2), columns).squeeze(-2)
        return out + self.pre_bias if bias else out

    def steering(self, h: torch.Tensor, strength: float) -> torch.Tensor:
        """strength x dense(h) W_dec^T: the decoded code without the decoder bias (h: (..., d_in))."""
        return strength * self.decoder(self.dense(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # --- training ----------------------------------------------------------------------------
    def losses(self, x: torch.Tensor, dead: torch.Tensor | None, variance: float, auxk_coef: float):
        """(total loss, reconstruction loss, aux-k loss, the top-k values and indices) of a batch
        x (N, d_in).

        ``variance``: the data's mean squared deviation from its mean (the MSE's unit);
        ``dead``: a bool mask of the latents counted dead (None or all False: no aux-k term)."""
        pre = self.pre_activations(x)
        values, indices = self.top_k(pre)
        recon = self.decode_sparse(values, indices)
        mse = ((recon - x) ** 2).mean() / variance
        aux = torch.zeros((), device=x.device)
        if self.auxk and dead is not None and bool(dead.any()):
            # Rebuild what the live latents missed from the dead ones' largest pre-activations.
            masked = pre.masked_fill(~dead, float("-inf"))
            k_aux = min(self.auxk, int(dead.sum()))
            aux_values, aux_indices = torch.topk(masked, k_aux, dim=-1)
            aux_recon = self.decode_sparse(torch.relu(aux_values), aux_indices, bias=False)
            residual = (x - recon).detach()
            spread = ((residual - residual.mean(0)) ** 2).mean().clamp(min=1e-12)
            aux = (((aux_recon - residual) ** 2).mean() / spread).nan_to_num(0.0)
        return mse + auxk_coef * aux, mse, aux, values.detach(), indices

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.decoder.weight.div_(self.decoder.weight.norm(dim=0, keepdim=True).clamp(min=1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient's component along each (unit) decoder column: the step then moves
        along the sphere the columns are kept on."""
        w, g = self.decoder.weight, self.decoder.weight.grad
        if g is not None:
            g.sub_((w * g).sum(0, keepdim=True) * w)

    # --- files -------------------------------------------------------------------------------
    def save(self, path, metadata: dict | None = None) -> Path:
        from safetensors.torch import save

        from bench.core.files import atomic_write
        path = Path(path)
        tensors = {"encoder.weight": self.encoder.weight, "decoder.weight": self.decoder.weight,
                   "pre_bias": self.pre_bias, "latent_bias": self.latent_bias}
        meta = {"format": FORMAT, **({"k": self.k} if self.k else {}),
                **({"auxk": self.auxk} if self.auxk else {}), **(metadata or {})}
        data = save({n: t.detach().cpu().contiguous() for n, t in tensors.items()},
                    metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        # bytes written by Python: safetensors' own writer makes the file private (0600)
        return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))

    @classmethod
    def load(cls, path, d_in: int | None = None, where: str = "sae") -> "KSparseAutoencoder":
        """An SAE from a safetensors file; a missing, non-safetensors or wrong-shaped file is a
        one-line EraselabError naming the file and what was expected."""
        tensors, meta = read_sae_file(path, where)
        n, width = tensors["encoder.weight"].shape
        shapes = {"decoder.weight": (width, n), "pre_bias": (width,), "latent_bias": (n,)}
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != shape:
                raise EraselabError(f"{where} {path}: {name} has shape {tuple(tensors[name].shape)}, "
                                    f"expected {shape} (encoder.weight is {(n, width)}); {EXPECTED}")
        if d_in is not None and width != d_in:
            raise EraselabError(f"{where} {path}: an SAE of width {width}, expected {d_in} (the text "
                                f"encoder's hidden size); {EXPECTED}")
        k = _meta_int(meta, "k", path, where)
        auxk = _meta_int(meta, "auxk", path, where)
        layer = _meta_int(meta, "layer", path, where)
        if k is not None and not 1 <= k <= n:
            raise EraselabError(f"{where} {path}: metadata k={k} outside [1, {n}]")
        sae = cls(width, n, k, auxk)
        with torch.no_grad():
            sae.encoder.weight.copy_(tensors["encoder.weight"])
            sae.decoder.weight.copy_(tensors["decoder.weight"])
            sae.pre_bias.copy_(tensors["pre_bias"])
            sae.latent_bias.copy_(tensors["latent_bias"])
        sae.metadata, sae.layer = meta, layer  # layer: the one it was trained on, if recorded
        return sae.eval()


def read_sae_file(path, where: str = "sae") -> tuple[dict, dict]:
    """The four SAE tensors (float32) and the metadata of a safetensors file, checked."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise EraselabError(f"{where} {quoted(str(path))}: no such file; expected {EXPECTED}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            missing = [n for n in TENSORS if n not in names]
            if missing:
                raise EraselabError(f"{where} {path}: no tensor {', '.join(missing)}; expected {EXPECTED}")
            tensors = {n: handle.get_tensor(n) for n in TENSORS}
            meta_text = (handle.metadata() or {}).get(META_KEY)
    except EraselabError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a bad header
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EraselabError(f"{where} {path}: not a readable safetensors file ({shorten(first)}); "
                            f"expected {EXPECTED}") from None
    try:
        meta = json.loads(meta_text) if meta_text is not None else {}
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise EraselabError(f"{where} {path}: metadata {META_KEY} is not a JSON object")
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise EraselabError(f"{where} {path}: {name} is {tensor.dtype}, expected floating point")
    if tensors["encoder.weight"].dim() != 2:
        raise EraselabError(f"{where} {path}: encoder.weight has shape {tuple(tensors['encoder.weight'].shape)}, "
                            f"expected 2 dimensions; {EXPECTED}")
    return {n: t.float() for n, t in tensors.items()}, meta


def _meta_int(meta: dict, key: str, path, where: str) -> int | None:
    if meta.get(key) is None:
        return None
    if isinstance(meta[key], bool) or not isinstance(meta[key], int):
        raise EraselabError(f"{where} {path}: metadata {key}={quoted(meta[key])} is not an integer")
    return meta[key]


# --- the text encoder's layers ------------------------------------------------------------------
def text_layers(text_encoder) -> nn.ModuleList:
    """The encoder layers of a transformers CLIP text model (``encoder.layers``; older releases
    nest it as ``text_model.encoder.layers``)."""
    model = getattr(text_encoder, "text_model", text_encoder)
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise EraselabError(f"{type(text_encoder).__name__}: no encoder.layers; a CLIP text encoder is expected")
    return layers


def check_layer(text_encoder, layer: int, where: str) -> nn.Module:
    layers = text_layers(text_encoder)
    if not 0 <= layer < len(layers):
        raise EraselabError(f"{where}: layer {layer} does not exist; the text encoder has {len(layers)} "
                            f"layers (0-{len(layers) - 1})")
    return layers[layer]


def layer_hidden(output) -> torch.Tensor:
    """The hidden states of an encoder layer's output (a tensor, or a tuple led by one)."""
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def layer_outputs(text_encoder, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream after encoder layer ``layer`` (0-indexed) for token ids (B, L): (B, L, d).

    Read with a forward hook on that layer, the module concept-steerers' hook edits, so the SAE is
    trained on exactly what it steers. No attention mask: SD conditions on every position."""
    seen = []
    handle = check_layer(text_encoder, layer, "layer_outputs").register_forward_hook(
        lambda module, inputs, output: seen.append(layer_hidden(output).detach()))
    try:
        text_encoder(ids.to(text_encoder.device))
    finally:
        handle.remove()
    return seen[0].float()
