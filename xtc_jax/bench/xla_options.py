"""XLA compiler options compared on one training step, alternately, in one process.

    python -m xtc_jax.bench.xla_options [--case consistency_cpu] [--rounds 12] [--steps 4]
        [--variant ynn_default:xla_cpu_experimental_ynn_fusion_type=DEFAULT] ...

Comparing XLA flags across processes on a noisy machine mixes the flag's
effect with minute-to-minute noise. Here the same lowered step is compiled once
per variant (`Lowered.compile(compiler_options)`, which takes DebugOptions
fields by name), and the variants take turns each round (order rotated, one
untimed step first), carrying the same state. The report is each variant's
median step time and its paired speedup over the first variant (median of
per-round ratios), with the rounds it won.

A variant is NAME or NAME:OPTION=VALUE[,OPTION=VALUE...]. The value DEFAULT
means XLA's own default: the option is removed from XLA_FLAGS (where `import
xtc_jax` may have set it) before JAX starts, and not passed to the compiler.
Enum lists are written with their full names, e.g.
xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics

#: The comparison behind the project's default: YNNPACK fusions as this jaxlib
#: sets them, against none (what `import xtc_jax` sets, see runtime.CPU_XLA_FLAGS).
DEFAULT_VARIANTS = ("jaxlib_default:xla_cpu_experimental_ynn_fusion_type=DEFAULT",
                    "ynn_off:xla_cpu_experimental_ynn_fusion_type=")  # fmt: skip


def option_value(text: str) -> bool | int | str:
    """A compiler option's value as XLA wants it: true/false as bools, digits as ints."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.lstrip("-").isdigit() else text


def parse_variant(text: str) -> tuple[str, dict[str, bool | int | str]]:
    """ "name:a=1,b=true" -> ("name", {"a": 1, "b": True}); a bare name has no options."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",") if rest else []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--variant {text!r}: write NAME:OPTION=VALUE[,OPTION=VALUE...]")
        options[key] = option_value(value)
    if not name:
        raise SystemExit(f"--variant {text!r}: the variant needs a name before ':'")
    return name, options


def drop_from_xla_flags(names: list[str], environ=os.environ) -> None:
    """Removes --NAME=... from XLA_FLAGS, so XLA's own defaults apply to NAME.

    XLA parses XLA_FLAGS once, when JAX starts its backend, and compiler options
    can override a flag but not unset it; so this must run before that.
    """
    if not names:
        return
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise SystemExit("JAX has already started; run this benchmark in a fresh process")
    flags = environ.get("XLA_FLAGS", "").split()
    environ["XLA_FLAGS"] = " ".join(
        f for f in flags if not any(f.startswith(f"--{name}=") for name in names)
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="consistency_cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    parser.add_argument("--variant", action="append", help="repeatable; default: YNNPACK on/off")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    if len(variants) < 2:
        raise SystemExit("give at least two --variant to compare")
    drop_from_xla_flags([k for o in variants.values() for k, v in o.items() if v == "DEFAULT"])
    from xtc_jax.bench import step_cases

    step = step_cases.JaxStep(step_cases.make_case(args.case, args.batch))
    lowered = step.lowered()
    compiled = {}
    for name, options in variants.items():
        explicit = {k: v for k, v in options.items() if v != "DEFAULT"}
        compiled[name] = lowered.compile(explicit or None)
        fusions = compiled[name].as_text().count("__ynn")
        print(f"{name}: compiled ({fusions} YNNPACK fusion lines) {options}", flush=True)
    names = list(variants)
    runs = {name: functools.partial(step.run, step_fn=compiled[name]) for name in names}
    seconds = step_cases.time_alternately(runs, args.rounds, args.steps, warm_steps=1)
    times = {name: [1e3 * t for t in seconds[name]] for name in names}
    first = names[0]
    result = {}
    print(f"{args.case}, batch {args.batch}: {args.rounds} rounds of {args.steps} steps")
    for name in names:
        ratios = [a / b for a, b in zip(times[first], times[name], strict=True)]
        wins = sum(r > 1 for r in ratios)
        result[name] = {"ms": statistics.median(times[name]), "speedup": statistics.median(ratios),
                        "wins": wins}  # fmt: skip
        speedup = result[name]["speedup"]
        print(f"  {name:<16} {result[name]['ms']:8.1f} ms  paired speedup vs {first}: "
              f"{speedup:.2f}x (faster in {wins}/{args.rounds} rounds)")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
