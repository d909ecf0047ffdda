"""Gradient-free search over the weights of any ``nn.Module``: random search and a genetic algorithm.

The article: networks "can also be optimized by using a universal search algorithm on the
space of neural network's weights, e.g., random guess or more systematically genetic
algorithm. This approach is not based on gradient and avoids the vanishing gradient
problem" (after Hochreiter & Schmidhuber's "guessing" experiments, 1996/97, which solved
long-lag latching tasks by random weight guessing faster than gradient methods).

Both searches work on the flat weight vector of a module and evaluate a whole population
at once: ``torch.func.functional_call`` runs the module with each candidate's weights and
``torch.func.vmap`` batches the candidates, so one call scores P networks.

- :func:`random_search` — draw weight vectors i.i.d. U(−a, a) (Hochreiter & Schmidhuber's
  guessing), keep the best.
- :func:`genetic_algorithm` — truncation selection, elitism, uniform crossover and Gaussian
  mutation (a plain real-coded GA; Holland 1975 / Goldberg 1989 in spirit, not a specific
  paper's variant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from gradwatch import _checks
from gradwatch.errors import ConfigError

__all__ = ["SearchResult", "flat_parameters", "genetic_algorithm", "load_flat_", "population_loss", "random_search"]


@dataclass(frozen=True)
class SearchResult:
    """The best weights found and how the search went.

    Attributes:
        best: the best flat weight vector (load it with :func:`load_flat_`).
        best_loss: its loss.
        history: best loss so far after each round (sample batch or generation).
        evaluations: number of networks evaluated.
    """

    best: torch.Tensor
    best_loss: float
    history: list[float]
    evaluations: int


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """Concatenate every trainable parameter of ``module`` into one vector (a copy)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("The module has no trainable parameters to search over.")
    return torch.cat([p.detach().reshape(-1) for p in params])


def _unflatten(module: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, pos = {}, 0
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        n = p.numel()
        out[name] = flat[pos : pos + n].reshape(p.shape)
        pos += n
    return out


def load_flat_(module: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Write a flat weight vector back into ``module``'s parameters, in place; returns it.

    Raises:
        ConfigError: the vector's length does not match the module.
    """
    n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if flat.numel() != n:
        raise ConfigError(f"load_flat_: the module has {n} trainable weights, the vector {flat.numel()}.")
    with torch.no_grad():
        for name, value in _unflatten(module, flat).items():
            module.get_parameter(name).copy_(value)
    return module


def population_loss(
    module: nn.Module,
    population: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Loss of every candidate weight vector (rows of ``population``), evaluated in one vmapped call.

    Returns:
        Shape (P,). A candidate whose loss is NaN gets +inf (it can never be selected).
    """
    if population.dim() != 2:
        raise ConfigError(f"population must have shape (P, n_weights). Got {tuple(population.shape)}.")

    def one(flat: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(module, _unflatten(module, flat), (inputs,)), targets)

    with torch.no_grad():
        losses = vmap(one)(population)
    return torch.nan_to_num(losses, nan=float("inf"))


def _first_below(losses: torch.Tensor, threshold: float | None) -> int | None:
    """Index of the first candidate whose loss is below ``threshold`` (None: none, or no threshold)."""
    if threshold is None:
        return None
    hits = (losses < threshold).nonzero()
    return int(hits[0]) if hits.numel() else None


def random_search(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    n_samples: int = 1024,
    batch: int = 256,
    scale: float = 1.0,
    seed: int = 0,
    stop_below: float | None = None,
) -> SearchResult:
    """Guess weight vectors uniformly in [−scale, scale]; keep the best. The module is not changed.

    With ``stop_below``, the search stops at the first guess whose loss is below it (in the
    order guessed), and ``evaluations`` counts the guesses up to and including that one —
    Hochreiter & Schmidhuber's "trials until solution".

    Raises:
        ConfigError: a count < 1 or scale ≤ 0.
    """
    owner = "random_search"
    n = _checks.positive_int(n_samples, "n_samples", owner)
    b = _checks.positive_int(batch, "batch", owner)
    a = _checks.interval(scale, "scale", owner, 0, low_open=True)
    dim = flat_parameters(module).numel()
    gen = torch.Generator().manual_seed(seed)
    best, best_loss, history, done = None, float("inf"), [], 0
    while done < n:
        m = min(b, n - done)
        pop = (torch.rand(m, dim, generator=gen) * 2 - 1) * a
        losses = population_loss(module, pop.to(inputs.device), inputs, targets, loss_fn)
        if (i := _first_below(losses, stop_below)) is not None:
            history.append(min(best_loss, float(losses[i])))
            return SearchResult(pop[i].clone(), float(losses[i]), history, done + i + 1)
        i = int(torch.argmin(losses))
        if float(losses[i]) < best_loss:
            best, best_loss = pop[i].clone(), float(losses[i])
        done += m
        history.append(best_loss)
    # every candidate may have scored +inf (NaN losses): then the last draw stands in
    return SearchResult(best if best is not None else pop[0].clone(), best_loss, history, done)


def genetic_algorithm(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    population: int = 128,
    generations: int = 50,
    elite: int = 8,
    parents: int = 32,
    mutation_std: float = 0.3,
    init_scale: float = 1.0,
    seed: int = 0,
    stop_below: float | None = None,
) -> SearchResult:
    """Evolve weight vectors: keep the ``elite`` best, breed the rest from the ``parents`` best.

    Each generation: evaluate all (vmapped), sort by loss, copy the elite unchanged, and fill
    the population with children of two random parents (uniform crossover: each weight from
    either parent) plus N(0, mutation_std²) noise. The module is not changed. With
    ``stop_below``, evolution stops at the first individual (in evaluation order) whose loss
    is below it; ``evaluations`` then counts every evaluation up to and including it.

    Raises:
        ConfigError: inconsistent sizes (elite ≤ parents ≤ population) or a value out of range.
    """
    owner = "genetic_algorithm"
    P = _checks.positive_int(population, "population", owner, minimum=2)
    G = _checks.positive_int(generations, "generations", owner)
    E = _checks.positive_int(elite, "elite", owner, minimum=0)
    K = _checks.positive_int(parents, "parents", owner, minimum=1)
    if not E <= P or not K <= P:
        raise ConfigError(f"genetic_algorithm needs elite <= population and parents <= population. Got {E}, {K}, {P}.")
    sd = _checks.interval(mutation_std, "mutation_std", owner, 0)
    a = _checks.interval(init_scale, "init_scale", owner, 0, low_open=True)
    dim = flat_parameters(module).numel()
    gen = torch.Generator().manual_seed(seed)
    pop = (torch.rand(P, dim, generator=gen) * 2 - 1) * a
    history: list[float] = []
    best, best_loss = pop[0].clone(), float("inf")
    for g in range(G):
        losses = population_loss(module, pop.to(inputs.device), inputs, targets, loss_fn).cpu()
        if (i := _first_below(losses, stop_below)) is not None:
            history.append(min(best_loss, float(losses[i])))
            return SearchResult(pop[i].clone(), float(losses[i]), history, g * P + i + 1)
        order = torch.argsort(losses)
        pop, losses = pop[order], losses[order]
        if float(losses[0]) < best_loss:
            best, best_loss = pop[0].clone(), float(losses[0])
        history.append(best_loss)
        n_child = P - E
        ma = torch.randint(0, K, (n_child,), generator=gen)
        pa = torch.randint(0, K, (n_child,), generator=gen)
        mask = torch.rand(n_child, dim, generator=gen) < 0.5
        children = torch.where(mask, pop[ma], pop[pa]) + sd * torch.randn(n_child, dim, generator=gen)
        pop = torch.cat([pop[:E], children])
    return SearchResult(best, best_loss, history, P * G)
