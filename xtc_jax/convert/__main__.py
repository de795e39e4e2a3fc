"""`python -m xtc_jax.convert FILE.pth [FILE.pth ...] --out DIR`: the original's models as exports.

    python -m xtc_jax.convert --models_dir MODELS_DIR --out DIR   (every known file; index.json)
    python -m xtc_jax.convert --to_torch EXPORT_DIR OUT.pth       (and back)

Each file becomes an export folder DIR/<file stem>/ (a training graph.pth:
one per edge) that the demo, the energy command, train.init_from and a frozen
network's networks[edge].checkpoint accept. The edge and architecture come
from the original's file names (rgb2normal_consistency.pth, normal2curvature.pth,
...); --edge src->dst --arch NAME [--downsample N | --depth N] name them for a
renamed file. torchvision's resnet50-*.pth (the ImageNet perceptual network)
converts too, to an rgb->imagenet export for --config.imagenet_weights.
torch is not needed: files are read by a restricted unpickler that never runs
anything a file names. --to_torch writes an export as the original's plain
state_dict (its key names and layouts), for the original repository's demo.py.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.convert", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("files", nargs="*", help="the original's .pth files (--to_torch: "
                        "EXPORT_DIR OUT.pth)")
    parser.add_argument("--models_dir", default="", help="convert every known file of a folder")
    parser.add_argument("--out", default="", help="folder for the export folders")
    parser.add_argument("--to_torch", action="store_true", help="export folder -> .pth")
    parser.add_argument("--edge", default="", help="src->dst, for a file not named SRC2DST.pth")
    parser.add_argument("--arch", default="", help="unet, unet_reshade, unet_depth, unet_old2, "
                        "dense1by1, resnet")
    parser.add_argument("--downsample", type=int, default=None, help="UNet depth (default: table)")
    parser.add_argument("--depth", type=int, default=None, help="ResNet depth: 18, 34, 50, 101 "
                        "or 152 (default: from resnet50-*.pth names, else 50)")
    args = parser.parse_args(argv)
    from xtc_jax.convert.command import convert_file, convert_models_dir, export_to_torch
    from xtc_jax.errors import XtcError

    if args.to_torch and len(args.files) != 2:
        parser.error("--to_torch takes two arguments: EXPORT_DIR OUT.pth")
    if not args.to_torch and not args.out:
        parser.error("--out DIR is required: the folder for the export folders")
    if not args.to_torch and not args.files and not args.models_dir:
        parser.error("name .pth files, or --models_dir DIR")
    try:
        if args.to_torch:
            export_to_torch(*args.files)
            return 0
        if args.models_dir:
            convert_models_dir(args.models_dir, args.out)
        for path in args.files:
            convert_file(path, args.out, args.edge, args.arch, args.downsample,
                         depth=args.depth)
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
