"""Compare the MD5 of every archive prepare_data downloaded with its pin in ``data.voc12``.

A step of its own so that pinning an MD5 after the first download (the mirror of
SegmentationClassAug.zip publishes none) reruns this check alone, not the data
and every step after it. The workflow's data checks wait for it, so no step
reads data whose archive does not match its pin.

Inputs:  --params (reads ``data.voc12.voc_md5``, ``aug_md5``, ``test_md5``);
         --prepared, the manifest of prepare_data (``archives``: ``{name: {"kind", "url", "md5"}}``).
Outputs: --out, JSON ``{"archives": {name: {"kind", "url", "md5", "pinned"}}}`` (empty for
         the synthetic dataset and for a VOC2012 folder that was not downloaded).
Exit status 1, naming the archive and both MD5s, when one differs from its pin.

Example:
  python -m pixsup.steps.check_downloads --params results/voc12/params/check_downloads.yaml \\
      --prepared results/voc12/data/prepared.json --out results/voc12/data/downloads_checked.json
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import load_step_params
from ..data.download import check_archives
from ..errors import DataError
from ..files import write_json
from . import _cli


def main(argv: list[str] | None = None) -> int:
    parser = _cli.parser("check_downloads", __doc__)
    _cli.add_params_argument(parser)
    parser.add_argument("--prepared", required=True, help="manifest JSON written by prepare_data")
    parser.add_argument("--out", required=True, help="JSON to write")
    _cli.add_common_arguments(parser)
    args = parser.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        pins = load_step_params(args.params, "check_downloads").data.voc12
        try:
            archives = json.loads(Path(args.prepared).read_text())["archives"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{args.prepared}: not a prepare_data manifest ({exc})") from None
        checked = check_archives(archives, {"voc": pins.voc_md5, "aug": pins.aug_md5, "test": pins.test_md5})
        write_json(args.out, checked)
        print(f"{len(archives)} downloaded archive(s) checked against their pins")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
