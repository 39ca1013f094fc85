"""Data-parallel learners: every learner holds a shard of the team batch and all of them take
the identical step.

A quantity that is a mean over the whole batch is computed as each learner's *share*, the sum
over its rows divided by the number of rows on all learners, and the shares (or their
gradients, or their Fisher-vector products) are summed across learners. The sum is the
whole-batch value on every learner, so every decision taken from it (the CG direction, the line
search's acceptance, Adam's step) is the same everywhere and the copies stay in sync. With one
learner every function here is the identity.

RLlib's DistributedDataParallel wrapping all-reduces gradients only inside `backward()`; the
trust-region step needs `autograd.grad` with a double backward and loss values in the line
search, so the sums are taken here explicitly instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    """Number of data-parallel learners (1 without an initialized process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all learners (a new tensor; `t` itself with one learner)."""
    if world_size() == 1:
        return t
    total = t.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def shard_fraction(num_rows: int, device: torch.device | str) -> float:
    """This learner's share of the rows: n_local / Σ n (1.0 with one learner)."""
    if world_size() == 1:
        return 1.0
    total = all_reduce_sum(torch.tensor(float(num_rows), dtype=torch.float64, device=device))
    return num_rows / float(total)


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the rows of all learners: Σ x / Σ n."""
    count = torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device)
    return all_reduce_sum(x.sum()) / all_reduce_sum(count)


def global_var(x: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of `x` over the rows of all learners: Σ (x − mean)² / (Σ n − 1)."""
    count = all_reduce_sum(torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device))
    mean = all_reduce_sum(x.sum()) / count
    return all_reduce_sum(((x - mean) ** 2).sum()) / (count - 1)


def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Replaces each parameter's gradient (of a share) by the sum over learners (the whole)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def shard_by_env_steps(items: Sequence[T], num_shards: int) -> list[list[T]]:
    """Splits whole episode fragments into `num_shards` lists of nearly equal env steps.

    Fragments are never cut: GAE needs each fragment's rows and its bootstrap state together.
    Greedy: longest fragment first, onto the shard with the fewest env steps so far.
    """
    shards: list[list[T]] = [[] for _ in range(num_shards)]
    sizes = [0] * num_shards
    for item in sorted(items, key=lambda e: e.env_steps(), reverse=True):
        i = sizes.index(min(sizes))
        shards[i].append(item)
        sizes[i] += item.env_steps()
    if any(not s for s in shards):
        raise ValueError(
            f"num_learners={num_shards} but the batch has only {len(items)} episode fragments; "
            "use fewer learners or more envs per EnvRunner (num_envs_per_env_runner)."
        )
    return shards
