"""Check that every make_cams shard of a CAM folder finished, and merge their manifests into ``index.json``.

Inputs:  --out (a CAM folder holding ``index.shard-I-of-N.json`` for I = 0..N-1 and the
         ``<id>.npz`` files they list), --shards N.
Outputs: ``<out>/index.json``: the first shard's fields with the ids of all shards in order.
         Any missing shard manifest or CAM file stops with a message naming it.

Example:
  python -m pixsup.steps.gather_cams --out results/synthetic/seed0/full/cams/train --shards 4
"""

from __future__ import annotations

from ..cam.cam_files import gather_manifests
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("gather_cams", __doc__)
    p.add_argument("--out", required=True, help="CAM folder of the shards")
    p.add_argument("--shards", type=int, required=True, metavar="N", help="how many shards make_cams wrote")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        manifest = gather_manifests(args.out, args.shards)
        print(f"{args.out}: {len(manifest['ids'])} CAM files from {args.shards} shards")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
