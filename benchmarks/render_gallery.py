"""Draw the transformer gallery (``STGallery``) of a finished run's best checkpoint.

    .venv/bin/python benchmarks/render_gallery.py outputs/addition_study/double/1_model=st_fcn,... \
        --out docs/results/addition/gallery_2xst_fcn.png [--num-images 8]

For sweeps run without the gallery callback (``experiment=sample_study`` and the studies built on
it switch it off): the first validation images of the run's own data, its best weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.callbacks import STGallery
from stnlab.run.evaluate import find_checkpoint, load_run
from stnlab.run.train import build_data_and_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run directory or a .ckpt file")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--num-images", type=int, default=8)
    args = parser.parse_args()
    state, cfg = load_run(find_checkpoint(args.run))
    data, module = build_data_and_module(cfg)
    module.load_state_dict(state["state_dict"])
    data.setup("validate")
    gallery = STGallery(num_images=args.num_images)
    images = data.val_set.tensors[0][: args.num_images]
    boxes = getattr(data, "boxes", {}).get("val")
    figure = gallery.render(module, images, None if boxes is None else boxes[: args.num_images])
    if figure is None:
        raise SystemExit(f"{args.run}: the model has no spatial transformer to draw")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
