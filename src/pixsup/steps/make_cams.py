"""Dump multi-scale, flip-augmented CAMs of a trained CAM network for every image of a split.

Inputs:  --model (a train_cam weights file), --root (VOC2012 folder), --split,
         --params (reads the keys of ``pixsup.config.STEP_KEYS["make_cams"]``).
Outputs: --out, a folder with one ``<id>.npz`` per image (keys ``keys``, ``cam``,
         ``high_res``: see ``pixsup.cam.cam_files``) and a manifest ``index.json``
         (``ids``, ``split``, ``scales``, ``flip``, ``cam_stride``, ``precision``, ``model`` and
         ``model_sha256``, the digest of its weights), and the provenance beside the manifest,
         inside --out: ``index.json.meta.json``.
Sharding: ``--shard I/N`` handles every N-th id from I and writes
         ``index.shard-I-of-N.json`` (and ``index.shard-I-of-N.json.meta.json``) instead of
         ``index.json``; gather_cams then checks all shards and writes ``index.json``.

Example:
  python -m pixsup.steps.make_cams --params params.yaml --root data/synthetic/VOC2012 \\
      --split train --model results/synthetic/seed0/full/model.pt --out results/synthetic/seed0/full/cams/train
"""

from __future__ import annotations

import time
from pathlib import Path

from torch.utils.data import Subset

from ..cam.cam_files import INDEX, manifest_name, shard_positions, start_cam_folder
from ..cam.inference import dump_cams
from ..checkpoints import load_cam_net, weights_sha256
from ..config import load_step_params
from ..data.datasets import CamInferDataset
from ..data.voc import load_cls_labels_npy
from ..files import write_json
from ..provenance import StepRecord
from ..runtime.device import resolve_device
from . import _cli


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        shard, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise SystemExit(f"error: --shard takes I/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= shard < total:
        raise SystemExit(f"error: --shard {text}: I must be in 0..N-1")
    return shard, total


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_cams", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", required=True, help="split list, e.g. train or train_aug")
    p.add_argument("--model", required=True, help="trained CAM network (train_cam output)")
    p.add_argument("--out", required=True, help="output folder of CAM files")
    p.add_argument("--shard", default=None, help="I/N: handle shard I of N (default: the whole split)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        shard, total = _parse_shard(args.shard) if args.shard else (0, 1)
        out_manifest = Path(args.out) / (manifest_name(shard, total) if args.shard else INDEX)
        params = load_step_params(args.params, "make_cams")
        cfg = params.cam_infer
        record = StepRecord("make_cams", params.model_dump(mode="json"))
        cls_labels = load_cls_labels_npy(params.data.cls_labels_npy) if params.data.cls_labels_npy else None
        dataset = CamInferDataset(args.root, args.split, cls_labels=cls_labels)
        positions = shard_positions(len(dataset), shard, total)
        ids = [dataset.ids[i] for i in positions]
        device = resolve_device(args.device)
        model, _ = load_cam_net(args.model)
        out = Path(args.out)
        start_cam_folder(out, out_manifest.name)
        started = time.perf_counter()
        dump_cams(
            model,
            Subset(dataset, positions),
            cfg,
            out,
            device,
            desc=f"make_cams {args.split} {shard}/{total}",
            progress=not args.quiet,
        )
        seconds = time.perf_counter() - started
        write_json(
            out_manifest,
            {
                "split": args.split,
                "ids": ids,
                "shard": shard,
                "num_shards": total,
                "model": args.model,
                "model_sha256": weights_sha256(model),
                "scales": list(cfg.scales),
                "flip": cfg.flip,
                "cam_stride": cfg.cam_stride,
                "precision": cfg.precision,
                "keys": {
                    "keys": "int64 (K,) class ids 1..20",
                    "cam": "float16 (K, h/stride, w/stride)",
                    "high_res": "float16 (K, H, W)",
                },
            },
        )
        record.write(
            out_manifest,
            extra={
                "images": len(ids),
                "images_per_second": round(len(ids) / max(seconds, 1e-9), 3),
                "device": str(device),
            },
        )
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
