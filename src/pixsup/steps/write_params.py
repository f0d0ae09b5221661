"""Write the values one step reads as that step's resolved params file.

The workflow passes the resolved values the step reads (``pixsup.config.STEP_KEYS``
of params.yaml with --config overrides) as JSON; they are validated against the
schema (pixsup.config), checked to hold no other key, and written as YAML, so a
step reads exactly what Snakemake tracked as its params and nothing else.

Inputs:  --step (the step the file is for), --values (a JSON mapping in params.yaml's
         layout, e.g. '{"cam_eval": {...}}').
Outputs: --out, the YAML file (keys in the given order).

Example:
  python -m pixsup.steps.write_params --step eval_cams --values '{"cam_eval": {"threshold_step": 0.01}}' \\
      --out results/synthetic/params/eval_cams.yaml
"""

from __future__ import annotations

import json

import yaml

from ..config import ConfigError, parse_params, select_keys, step_keys
from ..files import write_text
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("write_params", __doc__)
    p.add_argument("--step", required=True, help="the step that reads the file (a key of pixsup.config.STEP_KEYS)")
    p.add_argument("--values", required=True, help="JSON mapping of the values to write")
    p.add_argument("--out", required=True, help="YAML file to write")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        try:
            values = json.loads(args.values)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--values is not JSON: {exc}") from None
        params = parse_params(values, "--values")
        declared = select_keys(params, step_keys(args.step, params))
        extra = sorted(_leaf_keys(values) - _leaf_keys(declared))
        if extra:
            raise ConfigError(f"--values: step '{args.step}' does not read {', '.join(extra)}")
        write_text(args.out, yaml.safe_dump(values, sort_keys=False))
        print(f"wrote {args.out} ({', '.join(values)})")
        return 0

    return _cli.run(body)


def _leaf_keys(values: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in values.items():
        if isinstance(value, dict) and value:
            keys |= _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


if __name__ == "__main__":
    raise SystemExit(main())
