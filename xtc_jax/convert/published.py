"""A folder of converted published models (`--models_dir`): which export serves which edge.

`python -m xtc_jax.convert --models_dir DOWNLOADS --out models` writes one export
folder per file, named after it (`models/rgb2normal_consistency/`,
`models/normal2curvature/`, ...). `PublishedModels("models")` reads their
model.json files and answers the demo's and the energy command's questions:
the baseline or consistency rgb->target model, and the network of an edge.
Converting into the folder that holds the `.pth` files is fine: they sit side
by side with the exports.
"""

from __future__ import annotations

import os

from xtc_jax.errors import ConfigError
from xtc_jax.infra import export as export_lib
from xtc_jax.models.edges import edge_key

#: Where the original's files are published (xtconsistency.md §8), for the user to fetch. The
#: SWITCHdrive shares are reported dead (XTConsistency issues #11, #17): ask the authors, or
#: use a copy you have.
SOURCES = (
    "rgb2{normal,depth,reshading}_{baseline,consistency}.pth: "
    "https://drive.switch.ch/index.php/s/QPvImzbbdjBKI5P (tools/download_models.sh)",
    "the perceptual networks: https://drive.switch.ch/index.php/s/aXu4EFaznqtNzsE "
    "(tools/download_percep_models.sh)",
    "the energy's rgb->K and K->normal networks: "
    "https://drive.switch.ch/index.php/s/aZDOEBixS4W7mBL (tools/download_energy_graph_edges.sh)",
    "torchvision's ImageNet ResNet-50: https://download.pytorch.org/models/resnet50-0676ba61.pth",
)
VARIANTS = ("baseline", "consistency")


def how_to_get(directory: str) -> str:
    return ("download the original's .pth files into a folder (the README's 'Use the published "
            "models' says where), then convert them: python -m xtc_jax.convert --models_dir "
            f"DOWNLOADS --out {directory}")


class PublishedModels:
    """The export folders under `directory`, by edge; ConfigError when there are none."""

    def __init__(self, directory: str):
        self.directory = directory
        self.exports: dict[str, dict] = {}  # folder -> model.json
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                folder = os.path.join(directory, name)
                if os.path.isfile(os.path.join(folder, export_lib.MODEL_JSON)):
                    self.exports[folder] = export_lib.read_model_config(folder)
        if not self.exports:
            exists = os.path.isdir(directory)
            pth = exists and any(f.endswith(".pth") for f in os.listdir(directory))
            what = ("holds .pth files but no converted exports" if pth else
                    "holds no converted models" if exists else "does not exist")  # fmt: skip
            raise ConfigError(f"--models_dir {directory} {what}: {how_to_get(directory)}.")

    def _with_edge(self, edge: str) -> list[str]:
        return [folder for folder, config in self.exports.items() if config.get("edge") == edge]

    def rgb_model(self, target: str, variant: str) -> str:
        """The export of rgb2{target}_{variant}.pth (variant "baseline" or "consistency")."""
        edge = edge_key("rgb", target)
        found = [f for f in self._with_edge(edge) if os.path.basename(f).endswith(f"_{variant}")]
        if not found:
            raise ConfigError(f"--models_dir {self.directory} has no {variant} {edge} model (a "
                              f"converted rgb2{target.split('_')[0]}_{variant}.pth): "
                              f"{how_to_get(self.directory)}.")  # fmt: skip
        return found[0]

    def edge(self, edge: str) -> str | None:
        """The export of an edge's network (a perceptual or energy network), or None.

        A baseline/consistency model counts only where no other file has the edge."""
        found = self._with_edge(edge)
        plain = [f for f in found if not os.path.basename(f).endswith(tuple(f"_{v}"
                                                                            for v in VARIANTS))]
        return (plain or found or [None])[0]

    def spec(self, folder: str) -> dict:
        """The `networks[edge]` spec of an export: its architecture, checkpoint = the folder."""
        return export_lib.checkpoint_spec(folder, self.exports[folder])
