"""Write the params sections one step reads as that step's resolved params file.

The workflow passes the resolved values (params.yaml with --config overrides) as
JSON; they are validated against the schema (pixsup.config) and written as YAML,
so a step reads exactly what Snakemake tracked as its params.

Inputs:  --values (a JSON mapping of section name to values, e.g. '{"cam_eval": {...}}').
Outputs: --out, the YAML file (sections in the given order).

Example:
  python -m pixsup.steps.write_params --values '{"cam_eval": {"threshold_step": 0.01}}' \\
      --out results/synthetic/params/eval_cams.yaml
"""

from __future__ import annotations

import json

import yaml

from ..config import ConfigError, parse_params
from ..files import write_text
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("write_params", __doc__)
    p.add_argument("--values", required=True, help="JSON mapping of the sections to write")
    p.add_argument("--out", required=True, help="YAML file to write")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        try:
            values = json.loads(args.values)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--values is not JSON: {exc}") from None
        parse_params(values, "--values")
        write_text(args.out, yaml.safe_dump(values, sort_keys=False))
        print(f"wrote {args.out} ({', '.join(values)})")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
