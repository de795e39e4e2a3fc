"""The training steps the train-step benchmark compares, built in JAX and in PyTorch.

A case is a training config plus the perceptual losses taken every step:
- "unet_cpu" / "unet_paper": rgb -> normal alone (`configs/transfer.py`),
  the `:cpu` UNet (ds 3, width 0.25, 48 px) or the paper's (ds 6, 256 px);
- "consistency_cpu" / "consistency_paper": `configs/normal.py`'s step, the
  target network plus k=3 frozen perceptual networks forward and backward,
  and the k direct rgb -> K networks forward (for the win-rates).

The JAX side is the project's own jitted step (`consistency/step.py`, AMSGrad
from `training/optim.py`, state donated). The PyTorch side computes the same losses
with the same weights (copied from the JAX parameters), masks and optimiser
(`torch.optim.Adam(amsgrad=True)` with coupled weight decay, the original's),
so both start from the same loss; `first_losses` checks that.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import jax
import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.consistency import selection
from xtc_jax.consistency.config import consistency_config, transfer_config
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.consistency.plan import loss_terms, make_plan
from xtc_jax.consistency.step import make_term_means, make_train_step
from xtc_jax.models.edges import output_channels, path_edges, split_edge
from xtc_jax.training import optim

#: Perceptual losses taken by the consistency cases: k=3, all with learned networks.
CHOSEN = ("depth_zbuffer", "principal_curvature", "reshading")
PERCEPTUAL = ["principal_curvature", "edge_texture", "reshading", "depth_zbuffer",
              "keypoints2d", "keypoints3d", "edge_occlusion"]  # fmt: skip
CASES = ("unet_cpu", "unet_paper", "consistency_cpu", "consistency_paper")


def chosen_for(k: int) -> tuple[str, ...]:
    """The perceptual domains of a k-loss step: CHOSEN for k = 3, else the first k of all 7."""
    if not 1 <= k <= len(PERCEPTUAL):
        raise ValueError(f"k={k}: use 1..{len(PERCEPTUAL)} perceptual losses.")
    return CHOSEN if k == len(CHOSEN) else tuple(PERCEPTUAL[:k])


@dataclasses.dataclass
class Case:
    name: str
    config: object
    chosen: tuple[str, ...]
    batch: int

    @property
    def resolution(self) -> int:
        return self.config.data.resolution


def make_case(name: str, batch: int, chosen: tuple[str, ...] = CHOSEN) -> Case:
    """The config of benchmark case `name` at `batch` examples per step."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES)}")
    preset = "cpu" if name.endswith("_cpu") else ""
    if name.startswith("unet"):
        config = transfer_config(f"rgb->normal,{preset}" if preset else "rgb->normal")
        chosen = ()
    else:
        config = consistency_config("normal", PERCEPTUAL, preset)
        config.selection.k = len(chosen)
    config.batch_size = batch
    return Case(name, config, tuple(chosen), batch)


def _used_edges(case: Case) -> list[str]:
    """The edges a step of `case` runs: target, chosen perceptual and direct networks."""
    config, terms = case.config, loss_terms(case.config)
    names = {"mae"} | {f"{kind}_{k}" for k in case.chosen for kind in ("percep", "direct")}
    edges = []
    for term in terms.values():
        if term.name in names:
            for path in (config.paths[term.pred], config.paths[term.target]):
                edges += [e for e in path_edges(path) if e not in edges]
    return edges


def random_batch(case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs and targets in [0, 1] for every domain the step reads."""
    rng = np.random.default_rng(seed)
    domains = {"rgb", "normal"} | set(case.chosen)
    return {
        d: rng.random((case.batch, case.resolution, case.resolution,
                       domains_lib.get(d).channels), dtype=np.float32)
        for d in sorted(domains)
    }  # fmt: skip


@dataclasses.dataclass
class JaxStep:
    """The project's jitted training step for a case; `run(n)` takes n steps and waits."""

    case: Case
    dtype: str = "float32"
    remat: str = "none"  # models/edges.py REMAT_MODES
    allocate: bool = True  # False: shapes only (for compiling and memory analysis)

    def __post_init__(self):
        config = self.case.config
        self.edges = _used_edges(self.case)
        self.graph = TaskGraph({e: config.networks[e] for e in self.edges}, self.dtype, self.remat)
        # The config's plan, its graph cut down to the edges this case runs.
        plan = dataclasses.replace(make_plan(config), graph=self.graph)
        target = plan.target_edge
        learned = [e for e in self.edges if self.graph.specs[e]["arch"] != "sobel"]
        init = lambda: self.graph.init(jax.random.PRNGKey(0), self.case.resolution, learned)  # noqa: E731
        params = init() if self.allocate else jax.eval_shape(init)
        self.params = jax.device_get(params) if self.allocate else params
        optimizer = optim.make_optimizer(config.optimizer)
        trainable = {target: params[target]}

        def make_state(trainable):
            return {"step": np.int32(0), "params": trainable,
                    "opt_state": optimizer.init(trainable), "rng": jax.random.PRNGKey(0),
                    "winrate": selection.winrate_init(plan.perceptual)}  # fmt: skip

        frozen = {e: params[e] for e in learned if e != target}
        frozen.update({e: {} for e in self.edges if e not in learned})  # the analytic Sobel
        if self.allocate:
            state = make_state(trainable)
            self.state = jax.device_put(jax.tree.map(np.array, jax.device_get(state)))
            self.frozen = jax.device_put(frozen)
            self.batch = jax.device_put(random_batch(self.case))
        else:
            self.state = jax.eval_shape(make_state, trainable)
            self.frozen = frozen
            self.batch = jax.eval_shape(lambda: random_batch(self.case))
        self.term_means = make_term_means(plan, self.case.chosen)
        fn = make_train_step(plan, self.case.chosen, optimizer)
        self.step_fn = fn  # unjitted, for callers that jit it with their own shardings
        self.step = jax.jit(fn, donate_argnums=0)
        self.last_metrics = None

    def lowered(self):
        return self.step.lower(self.state, self.frozen, self.batch)

    def saved_bytes(self) -> int:
        """Bytes the forward pass keeps for the backward pass (the residuals of the step's
        vjp: activations, plus the weights the backward reads), from tracing alone.

        This is what remat trades for recomputation, independent of the backend; the
        compiled footprint adds the backend's scheduling and workspace on top.
        """

        def pullback(trainable, frozen, batch):
            forward = lambda t: self.term_means(t, frozen, batch)  # noqa: E731
            return jax.vjp(forward, trainable, has_aux=True)[1]

        shapes = jax.eval_shape(pullback, self.state["params"], self.frozen, self.batch)
        return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes)))

    def run(self, steps: int, step_fn: Callable | None = None) -> None:
        """Takes `steps` steps with `step_fn` (default: the jitted step) and waits.

        `step_fn` may be another compilation of the same lowered step (other XLA
        options); the state carries over, so variants can take turns.
        """
        step_fn = step_fn or self.step
        for _ in range(steps):
            self.state, self.last_metrics = step_fn(self.state, self.frozen, self.batch)
        jax.block_until_ready(self.last_metrics)

    def loss(self) -> float:
        return float(self.last_metrics["loss/total"])


class TorchStep:
    """The same step in PyTorch: eager or compiled, NCHW or channels_last, fp32 or bf16."""

    def __init__(self, case: Case, jax_params: dict, setting: str, device: str = "cpu"):
        import torch

        from xtc_jax.bench import torch_unet

        self.torch = torch
        self.case, self.setting, self.device = case, setting, device
        self.channels_last = setting != "original"
        self.bf16 = setting == "bf16"
        config = case.config
        self.nets = {}
        for edge in _used_edges(case):
            spec = dict(config.networks[edge])
            src, dst = split_edge(edge)
            if spec["arch"] == "sobel":  # analytic, no parameters
                sobel = torch_unet.build_torch("sobel", 3).to(device)
                self.nets[edge] = sobel.requires_grad_(False)
                continue
            kwargs = {k: v for k, v in spec.items() if k not in ("arch", "checkpoint")}
            kwargs.setdefault("out_channels", output_channels(dst))
            net = torch_unet.build_torch(spec["arch"], domains_lib.get(src).channels, **kwargs)
            torch_unet.load_flax_params(net, jax_params[edge])
            net = net.to(device)
            if self.channels_last:
                net = net.to(memory_format=torch.channels_last)
            if edge != "rgb->normal":
                net.requires_grad_(False)
            self.nets[edge] = net
        self.target = self.nets["rgb->normal"]
        opt = config.optimizer
        self.optimizer = torch.optim.Adam(self.target.parameters(), lr=opt.learning_rate,
                                          weight_decay=opt.weight_decay, amsgrad=True)  # fmt: skip
        self.batch = {k: self._tensor(v) for k, v in random_batch(case).items()}
        self._step = self._eager_step
        if setting in ("compiled", "bf16"):
            self._step = torch.compile(self._eager_step)
        self.last_loss = None

    def _tensor(self, array: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
        tensor = tensor.to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=self.torch.channels_last)
        return tensor

    def _mask(self, target, domain: str):
        mask_value = domains_lib.get(domain).mask_value
        if mask_value is None:
            return None
        hit = (target - mask_value).abs().le(1e-3).all(dim=1, keepdim=True).float()
        dilated = self.torch.nn.functional.max_pool2d(hit, 5, stride=1, padding=2)
        return dilated.eq(0)

    def _l1(self, pred, target, domain: str):
        """Masked L1 per example, averaged (as `losses.masked_l1`, denominator "valid")."""
        diff = (pred.float() - target.float()).abs()
        mask = self._mask(target.float(), domain)
        if mask is None:
            return diff.mean()
        mask = mask.expand_as(diff)
        per_example = (diff * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1)
        return per_example.mean()

    def _eager_step(self, batch):
        torch = self.torch
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            n_x = self.target(batch["rgb"])
            loss = self._l1(n_x, batch["normal"], "normal")
            for k in self.case.chosen:
                net = self.nets[f"normal->{k}"]
                with torch.no_grad():
                    f_y = net(batch["normal"])
                loss = loss + self._l1(net(n_x), f_y, k)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16,
                                             enabled=self.bf16):  # fmt: skip
            for k in self.case.chosen:  # the direct losses, for the win-rates
                self._l1(self.nets[f"rgb->{k}"](batch["rgb"]), batch[k], k)
        return loss.detach()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.last_loss = self._step(self.batch)
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def loss(self) -> float:
        return float(self.last_loss)


def time_alternately(runs: Mapping[str, Callable[[int], None]], rounds: int, steps: int,
                     warm_steps: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """{name: seconds per step, one figure per round}: every round calls each run(steps)
    once, the order rotated each round so that none always goes first. `warm_steps`
    untimed steps precede each timed call (to time a variant only after it is resident).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            if warm_steps:
                runs[name](warm_steps)
            start = time.perf_counter()
            runs[name](steps)
            times[name].append((time.perf_counter() - start) / steps)
    return times


def make_runner(kind: str, case: Case, jax_reference: JaxStep | None, device: str) -> Callable:
    """A JaxStep for "jax" / "jax_bf16", a TorchStep for a torch setting name."""
    if kind == "jax":
        return JaxStep(case)
    if kind == "jax_bf16":
        return JaxStep(case, dtype="bfloat16")
    return TorchStep(case, jax_reference.params, kind.removeprefix("torch_"), device)
