"""ring-a-bell: Ring-A-Bell (Tsai et al., ICLR 2024), a model-agnostic search for prompts that
carry the concept in the original text encoder's space.

Only the original text encoder ``tau0`` is used, never the edited model, so one search serves
every arm it attacks and reaches inference-time methods too (the found text is what they see).
A concept vector ``v = mean_i [tau0(p_i with the concept) - tau0(p_i without it)]`` over the
methods' training templates (the concept's name against the word it is a kind of: its parent,
else "object" / "painting"), on the full sequence of hidden states; the target is
``T = tau0(P) + eta v`` for the base prompt P; a genetic search over ``K`` vocabulary tokens
minimises ``|| T - tau0(tokens) ||^2``: each generation keeps the better half, refills it by
single-cut crossover of two kept parents (rate 0.5) and mutates one random position with
probability 0.25. Authors' notebook: eta 3, K 16, population 200, 3000 generations. The found
tokens are decoded to text, the prompt every arm is drawn with.

    eraselab attack --probe ring-a-bell --concept church --prompt "a photo of a church" --out out/rab
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Found, Probe
from attacks.soft_prompt import vocabulary
from methods.common import encode_ids, fill, generic_word, tokenize, training_templates


@dataclass
class RingABellConfig:
    eta: float = 3.0
    k: int = 16                  # tokens searched
    population: int = 200
    generations: int = 3000
    crossover: float = 0.5
    mutation: float = 0.25
    pairs: int = 8               # template pairs the concept vector averages

    def check(self):
        if min(self.k, self.population, self.generations, self.pairs) < 1 or self.population < 2:
            return "k, generations and pairs must be positive and population at least 2"
        if not (0 <= self.crossover <= 1 and 0 <= self.mutation <= 1):
            return "crossover and mutation are probabilities in [0, 1]"
        return None


class RingABell(Probe):
    """A genetic search for tokens near the base prompt plus the concept vector, in tau0's space."""

    kind = "text"
    needs_original_text_encoder = True
    Config = RingABellConfig
    quick_overrides = {"k": 4, "population": 8, "generations": 3, "pairs": 2}

    def attack(self, ctx):
        cfg, pipe, concept = ctx.config, ctx.pipe, ctx.concept
        te0 = ctx.original_text_encoder
        tok = pipe.tokenizer
        without = concept.parent or generic_word(concept)
        templates = training_templates(concept)[:cfg.pairs]
        with torch.no_grad():
            v = (encode_ids(te0, tokenize(pipe, [fill(t, concept.name) for t in templates]))
                 - encode_ids(te0, tokenize(pipe, [fill(t, without) for t in templates]))).mean(dim=0)
            target = encode_ids(te0, tokenize(pipe, [ctx.base_prompt]))[0] + cfg.eta * v
            vocab = vocabulary(tok, te0.get_input_embeddings().weight.shape[0])
            length = tok.model_max_length
            k = min(cfg.k, length - 2)

            def ids_of(genes):  # [SoT] tokens [EoT] and padding, as the tokenizer lays a prompt out
                ids = torch.full((len(genes), length), tok.pad_token_id if tok.pad_token_id is not None
                                 else tok.eos_token_id, dtype=torch.long)
                ids[:, 0] = tok.bos_token_id
                ids[:, 1:k + 1] = vocab[genes]
                ids[:, k + 1] = tok.eos_token_id
                return ids.to(target.device)

            def fitness(genes):
                return ((encode_ids(te0, ids_of(genes)) - target) ** 2).flatten(1).sum(dim=1)

            g = ctx.generator
            pop = torch.randint(0, len(vocab), (cfg.population, k), generator=g)
            scores = fitness(pop)
            before = float(scores.min())
            keep = cfg.population // 2
            with ctx.progress_bar(cfg.generations) as bar:
                for gen in range(cfg.generations):
                    order = torch.argsort(scores)
                    elite, elite_scores = pop[order[:keep]], scores[order[:keep]]
                    n_new = cfg.population - keep
                    a = elite[torch.randint(0, keep, (n_new,), generator=g)]
                    b = elite[torch.randint(0, keep, (n_new,), generator=g)]
                    cut = torch.randint(1, max(2, k), (n_new, 1), generator=g)
                    cross = torch.rand(n_new, 1, generator=g) < cfg.crossover
                    positions = torch.arange(k).unsqueeze(0)
                    children = torch.where(cross & (positions >= cut), b, a)
                    mutate = torch.rand(n_new, generator=g) < cfg.mutation
                    where = torch.randint(0, k, (n_new,), generator=g)
                    new_tokens = torch.randint(0, len(vocab), (n_new,), generator=g)
                    rows = torch.nonzero(mutate).flatten()
                    children[rows, where[rows]] = new_tokens[rows]
                    ctx.check_finite(elite_scores[0], gen + 1, cfg.generations)
                    pop = torch.cat([elite, children])
                    scores = torch.cat([elite_scores, fitness(children)])
                    bar.update(1)
            best = pop[int(torch.argmin(scores))]
            after = float(scores.min())
        token_ids = vocab[best].tolist()
        text = tok.decode(token_ids).strip()
        return Found(prompt=text, objective_before=before, objective_after=after, steps=cfg.generations,
                     extra={"tokens": token_ids, "without": without})
