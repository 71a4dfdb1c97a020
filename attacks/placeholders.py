"""Found embeddings in a prompt: each ``*`` token's embedding replaced by a vector of one's own.

A soft prompt, an inverted concept token and the relaxed tokens of a discrete attack all enter
the text encoder the same way: the prompt carries ``*`` (one token in CLIP's BPE) where a vector
goes, and a forward hook on the encoder's token-embedding table puts the vectors there, the
i-th ``*`` of a sequence getting vector i. Sequences without ``*`` (the unconditional "", a
negative prompt) are left alone, so classifier-free guidance and inference-time methods see
exactly what they would see with text. Gradients flow to the vectors (the attacks optimise them).

    with Placeholders(pipe.text_encoder, pipe.tokenizer, vectors):
        image = pipe("* a photo of a church").images[0]
"""

from __future__ import annotations

from bench.core.errors import EraselabError

PLACEHOLDER = "*"


def placeholder_id(tokenizer) -> int:
    ids = tokenizer(PLACEHOLDER).input_ids
    if len(ids) != 3:
        raise EraselabError(f"the tokenizer splits {PLACEHOLDER!r} into {len(ids) - 2} tokens; "
                            f"embedding attacks need it to be one")
    return int(ids[1])


class Placeholders:
    """A context manager (or ``remove()``-able hook) filling the ``*`` positions with ``vectors``.

    ``vectors`` is a (k, d) tensor, or None to leave every sequence as it is; it may be swapped
    (``.vectors = ...``) while the hook is on, as an optimiser does."""

    def __init__(self, text_encoder, tokenizer, vectors=None):
        self.vectors = vectors
        self.token = placeholder_id(tokenizer)
        self._handle = text_encoder.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.vectors is None:
            return None
        ids = inputs[0]
        rows, cols = (ids == self.token).nonzero(as_tuple=True)
        if len(rows) == 0:
            return None
        # the i-th placeholder of each sequence takes vector i (beyond k: the last vector)
        order = _rank_within_rows(rows)
        k = self.vectors.shape[0]
        out = output.clone()
        out[rows, cols] = self.vectors[order.clamp(max=k - 1)].to(out.dtype)
        return out

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def _rank_within_rows(rows):
    """For sorted row indices [0, 0, 1, 1, 1] -> [0, 1, 0, 1, 2]."""
    import torch
    rank = torch.zeros_like(rows)
    for i in range(1, len(rows)):
        rank[i] = rank[i - 1] + 1 if rows[i] == rows[i - 1] else 0
    return rank
