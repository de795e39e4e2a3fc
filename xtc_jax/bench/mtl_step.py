"""Multi-task step speed: the jitted xtask step against a PyTorch twin of xtask_mt's model.

    python -m xtc_jax.bench.mtl_step [--cases cpu,cityscapes] [--rounds 5] [--steps 3]

Cases: "cpu" (configs/mtl_synthetic.py:cpu: ResNet-18 ×0.25, decoders of 32, 64×64,
batch 4) and "cityscapes" (configs/mtl_cityscapes.py: ResNet-34, 7 classes, 128×256,
batch 8). Both steps do what xtask_mt's training step does: the forward in training
mode (BatchNorm batch statistics), the four losses (seg CE, masked L1 depth, L1
transferred depth against the detached direct depth, CE transferred seg against the
detached argmax), the two groups with λ, uncertainty weighting (two log-variances), one
Adam step. They start from the same weights (`torch_xtask.to_flax_variables`) and the
same batch; the first-step losses are printed side by side. Implementations:
  jax                 our step, fp32, jax.jit, state donated
  torch_original      eager, fp32, NCHW (the original's setting)
  torch_channels_last eager, fp32, channels_last
  torch_compiled      torch.compile, fp32, channels_last
  torch_bf16          torch.compile, bf16 autocast, channels_last (PyTorch's best on a GPU)
Timed alternately in one run (median over rounds, min-max beside it); the ratio is
torch / jax (above 1: JAX is faster). Inference with and without the transfer nets
(`direct_only`, as the original's get_inference_time.py) is timed for jax and eager
torch. torch is a benchmark-only extra (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.bench.step_cases import time_alternately
from xtc_jax.bench.train_step import machine
from xtc_jax.infra import atomic

IMPLS = ("jax", "torch_original", "torch_channels_last", "torch_compiled", "torch_bf16")
CASES = {
    "cpu": dict(dataset="synthetic", preset="cpu", batch=4),
    "cityscapes": dict(dataset="cityscapes", preset="", batch=8),
}


def case_config(name: str):
    from xtc_jax.mtl.config import mtl_config

    spec = CASES[name]
    config = mtl_config(spec["dataset"], spec["preset"])
    config.batch_size = spec["batch"]
    config.model.imagenet_normalize = False
    return config


def random_batch(config, seed: int = 0) -> dict[str, np.ndarray]:
    from xtc_jax.data.mtl import sources

    rng = np.random.default_rng(seed)
    b, (h, w) = config.batch_size, config.data.size
    depth = rng.uniform(0.01, 0.4, (b, h, w, 1)).astype(np.float32)
    depth[:, : h // 8] = 0.0  # a band without depth, as sky
    seg = rng.integers(0, sources.num_classes(config.data), (b, h, w)).astype(np.int32)
    seg[:, -h // 8 :] = -1
    return {"rgb": rng.random((b, h, w, 3), np.float32), "seg": seg, "depth": depth,
            "depth_mask": (depth > 0).astype(np.float32)}  # fmt: skip


def torch_net(config):
    from xtc_jax.bench.torch_resnet import randomize
    from xtc_jax.bench.torch_xtask import TorchXTaskNet
    from xtc_jax.mtl.model import model_fields

    fields = model_fields(config)
    return randomize(TorchXTaskNet(**fields), seed=0).train()


class JaxMultiTaskStep:
    def __init__(self, config, variables: dict, batch: dict):
        from xtc_jax.losses import task_weighting
        from xtc_jax.mtl import model as model_lib
        from xtc_jax.mtl.step import make_optimizer, make_train_step, weighting_options

        self.config = config
        self.model = model_lib.build(config)
        optimizer = make_optimizer(config, epoch_steps=1000)
        options = weighting_options(config, epoch_steps=1000)
        state = {"step": jnp.int32(0), "rng": jax.random.key(0), **variables,
                 "opt_state": optimizer.init(variables["params"]),
                 "weighting": task_weighting.get(config.weighting).init(2, options)}  # fmt: skip
        self.state = jax.tree.map(jnp.array, state)
        self.batch = jax.device_put(batch)
        self.step = jax.jit(make_train_step(config, self.model, optimizer, options),
                            donate_argnums=0)  # fmt: skip
        self.metrics = None
        self.variables = variables

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.state, self.metrics = self.step(self.state, {}, self.batch)
        jax.block_until_ready(self.metrics)

    def loss(self) -> float:
        return float(self.metrics["loss"])

    def inference(self, direct_only: bool):
        fn = jax.jit(lambda v, x: self.model.apply(v, x, direct_only=direct_only))
        x = self.batch["rgb"]

        def run(steps: int) -> None:
            for _ in range(steps):
                out = fn(self.variables, x)
            jax.block_until_ready(out)

        return run


class TorchMultiTaskStep:
    """xtask_mt's training step (main_cross_cs.py with --uncertainty_weights) in PyTorch."""

    def __init__(self, config, net, batch: dict, setting: str, device: str = "cpu"):
        import copy

        import torch

        self.torch, self.config, self.device = torch, config, device
        self.channels_last = setting != "original"
        self.bf16 = setting == "bf16"
        self.net = copy.deepcopy(net).to(device).train()
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.log_vars = torch.zeros(2, device=device, requires_grad=True)
        opt = config.optimizer
        self.optimizer = torch.optim.Adam([*self.net.parameters(), self.log_vars],
                                          lr=opt.learning_rate, betas=(opt.b1, opt.b2))  # fmt: skip
        t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}
        rgb = t["rgb"].permute(0, 3, 1, 2)
        self.rgb = rgb.contiguous(memory_format=torch.channels_last) if self.channels_last else (
            rgb.contiguous())  # fmt: skip
        self.seg = t["seg"].long()
        self.depth = t["depth"].permute(0, 3, 1, 2).contiguous()
        self.mask = t["depth_mask"].permute(0, 3, 1, 2).contiguous()
        self._step = torch.compile(self._eager) if setting in ("compiled", "bf16") else self._eager
        self.last = None

    def _depth_l1(self, pred, target):
        per_image = ((pred.float() - target).abs() * self.mask).sum((1, 2, 3)) / self.mask.sum(
            (1, 2, 3)).clamp(min=1)  # fmt: skip
        return per_image.mean()

    def _eager(self):
        torch, f = self.torch, self.torch.nn.functional
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(self.rgb)
        seg, depth = out["seg"].float(), out["depth"].float()
        l_seg = f.cross_entropy(seg, self.seg, ignore_index=-1)
        l_dep = self._depth_l1(depth, self.depth)
        l_tdep = self._depth_l1(out["tdepth"].float(), depth.detach())
        labelled = (self.seg != -1).float()
        pseudo = seg.detach().argmax(1)
        ce = f.cross_entropy(out["tseg"].float(), pseudo, reduction="none")
        l_tseg = (ce * labelled).sum() / labelled.sum().clamp(min=1)
        l1, l2 = self.config.loss.lambda_1, self.config.loss.lambda_2
        groups = torch.stack([(1 - l1) * l_seg + l1 * l_tdep, (1 - l2) * l_dep + l2 * l_tseg])
        total = (0.5 * torch.exp(-self.log_vars) * groups + self.log_vars).sum()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return groups.detach().sum()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.last = self._step()
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def loss(self) -> float:
        return float(self.last)

    def inference(self, direct_only: bool):
        torch = self.torch
        net = self.net

        def run(steps: int) -> None:
            net.eval()
            with torch.no_grad():
                for _ in range(steps):
                    net(self.rgb, direct_only=direct_only)
            net.train()

        return run


def _summary(values: list[float], batch: int) -> dict:
    median = statistics.median(values)
    return {"step_seconds": median, "min": min(values), "max": max(values),
            "images_per_second": batch / median}  # fmt: skip


def bench_case(name: str, impls: list[str], rounds: int, steps: int, device: str,
               log=print) -> dict:  # fmt: skip
    from xtc_jax.bench.torch_xtask import to_flax_variables

    config = case_config(name)
    batch = random_batch(config)
    net = torch_net(config)
    variables = to_flax_variables(net)
    runners, first_loss, failed = {}, {}, {}
    for impl in impls:
        try:
            start = time.perf_counter()
            runner = (JaxMultiTaskStep(config, variables, batch) if impl == "jax" else
                      TorchMultiTaskStep(config, net, batch, impl.removeprefix("torch_"), device))
            runner.run(1)
            first_loss[impl] = runner.loss()
            runner.run(1)
            log(f"  {impl:<20} ready in {time.perf_counter() - start:6.1f} s, first-step loss "
                f"{first_loss[impl]:.6f}")  # fmt: skip
            runners[impl] = runner
        except Exception as error:  # a torch setting this machine cannot run
            failed[impl] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            log(f"  {impl:<20} FAILED: {failed[impl]}")
    times = time_alternately({k: r.run for k, r in runners.items()}, rounds, steps)
    b = config.batch_size
    result = {"case": name, "batch": b, "size": list(config.data.size),
              "encoder": f"ResNet-{config.model.encoder_depth} x{config.model.encoder_width}",
              "first_step_loss": first_loss, "failed": failed,
              "impls": {k: _summary(v, b) for k, v in times.items()}}  # fmt: skip
    if "jax" in result["impls"]:
        jax_seconds = result["impls"]["jax"]["step_seconds"]
        for entry in result["impls"].values():
            entry["torch_over_jax"] = entry["step_seconds"] / jax_seconds
    inference = {}
    for impl in [i for i in ("jax", "torch_original") if i in runners]:
        for direct_only in (False, True):
            run = runners[impl].inference(direct_only)
            run(1)
            inference[f"{impl}{'_direct_only' if direct_only else ''}"] = run
    result["inference"] = {k: _summary(v, b) for k, v in
                           time_alternately(inference, rounds, steps).items()}  # fmt: skip
    return result


def format_case(result: dict) -> str:
    lines = [f"{result['case']}: {result['encoder']}, {result['size'][0]}x{result['size'][1]}, "
             f"batch {result['batch']}",
             f"  {'train step':<28} {'ms':>9} {'(min-max)':>17} {'images/s':>9} {'torch/jax':>10}"]
    for impl, e in result["impls"].items():
        spread = f"({1e3 * e['min']:.1f}-{1e3 * e['max']:.1f})"
        lines.append(f"  {impl:<28} {1e3 * e['step_seconds']:9.1f} {spread:>17} "
                     f"{e['images_per_second']:9.1f} {e['torch_over_jax']:9.2f}x")
    lines.append(f"  {'inference':<28} {'ms':>9} {'(min-max)':>17} {'images/s':>9}")
    for impl, e in result["inference"].items():
        spread = f"({1e3 * e['min']:.1f}-{1e3 * e['max']:.1f})"
        lines.append(f"  {impl:<28} {1e3 * e['step_seconds']:9.1f} {spread:>17} "
                     f"{e['images_per_second']:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="cpu,cityscapes",
                        help="comma list of: cpu, cityscapes")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help="comma list of " + ", ".join(IMPLS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per implementation per round")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    import torch

    gpu = jax.devices()[0].platform == "gpu"
    device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    print(f"machine: {machine()}; torch {torch.__version__} on {device} "
          f"({torch.get_num_threads()} threads)", flush=True)  # fmt: skip
    results = {"machine": machine(), "torch": torch.__version__, "cases": []}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        print(f"== {name}", flush=True)
        result = bench_case(name, [i.strip() for i in args.impls.split(",")], args.rounds,
                            args.steps, device)  # fmt: skip
        print(format_case(result), flush=True)
        results["cases"].append(result)
    if args.json:
        atomic.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
