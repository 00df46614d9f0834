#!/usr/bin/env python3
"""plot.py: draws dmbench CSV results as one PNG: TFLOP/s (or GB/s, or ms) against sequence
length, one line per (mask, bias, causal, D) series. Other columns that vary across the rows
(dtype, bias dtype, density, B, H, ..., the input file when there are several) join the series
key, so that no line mixes cases. Rows whose status is not "ok" are left out.

    python3 bench/plot.py results.csv -o sweep.png --title "fwd, H100, bf16"

Headless (matplotlib's Agg backend); needs only matplotlib.
Exit status: 0 success, 1 no data to plot or a file that cannot be read, 2 usage error."""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after use("Agg"))

METRICS = {
    "tflops": ("TFLOP/s", "tflops"),
    "gbps": ("GB/s", "gbps"),
    "ms": ("ms (median)", "ms_median"),
}
# Always in the key, in this order; the others only when they vary across the rows.
BASE_KEY = ("mask", "bias", "causal", "D")
EXTRA_KEY = ("dtype", "density", "pattern", "softcap", "path", "num_splits", "B", "H", "Hkv")
INT_COLUMNS = ("B", "H", "Hkv", "Lq", "Lk", "D", "causal")


def die(msg, status=1):
    print(f"plot.py: {msg}", file=sys.stderr)
    sys.exit(status)


def read_rows(paths):
    rows = []
    for path in paths:
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                need = set(INT_COLUMNS) | {"mask", "bias", "status", "tflops", "gbps", "ms_median"}
                missing = need - set(reader.fieldnames or ())
                if missing:
                    die(f"{path}: not a dmbench CSV (no column {', '.join(sorted(missing))})")
                for line, r in enumerate(reader, start=2):
                    if r["status"] != "ok":
                        continue
                    try:
                        for c in INT_COLUMNS:
                            r[c] = int(r[c])
                        for c in ("tflops", "gbps", "ms_median"):
                            r[c] = float(r[c])
                    except (TypeError, ValueError):
                        die(f"{path}:{line}: cannot read the numbers of this row")
                    r["file"] = os.path.splitext(os.path.basename(path))[0]
                    if r.get("bias_dtype") == "f32":  # an fp32 bias is its own series
                        r["bias"] += "/f32"
                    rows.append(r)
        except OSError as e:
            die(f"cannot read '{path}': {e.strerror}")
    return rows


def series_key_fields(rows, n_files):
    fields = list(BASE_KEY)
    fields += [c for c in EXTRA_KEY if c in rows[0] and len({r[c] for r in rows}) > 1]
    # x is Lk; when Lq is swept apart from Lk (decode, Lq = 1, ...) it joins the key.
    if any(r["Lq"] != r["Lk"] for r in rows):
        fields.append("Lq")
    if n_files > 1:
        fields.append("file")
    return fields


def label_of(key, fields):
    parts = []
    for name, value in zip(fields, key):
        if name == "mask":
            parts.append(f"mask-{value}")
        elif name == "bias":
            parts.append(f"bias-{value}")
        elif name == "causal":
            parts.append("causal" if value else "full")
        elif name == "D":
            parts.append(f"d{value}")
        elif name in ("file", "dtype"):
            parts.append(str(value))
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def default_title(rows, metric_name):
    """The columns every row shares, e.g. 'dmbench: bf16, B=2, H=16'."""
    shared = []
    for c in ("dtype", "B", "H", "D"):
        values = {r[c] for r in rows}
        if len(values) == 1:
            v = values.pop()
            shared.append(str(v) if c == "dtype" else f"{c}={v}")
    return f"dmbench {metric_name}" + (": " + ", ".join(shared) if shared else "")


def main():
    ap = argparse.ArgumentParser(
        description="Plot dmbench CSV results: a metric against sequence length, one line per "
        "(mask, bias, causal, D) series.")
    ap.add_argument("csv", nargs="+", help="dmbench --csv output files")
    ap.add_argument("-o", "--output", default="sweep.png", help="PNG to write (default sweep.png)")
    ap.add_argument("--title", help="plot title (default: from the columns all rows share)")
    ap.add_argument("--metric", choices=sorted(METRICS), default="tflops",
                    help="y axis (default tflops)")
    ap.add_argument("--dpi", type=int, default=120, help="resolution (default 120)")
    args = ap.parse_args()

    rows = read_rows(args.csv)
    if not rows:
        die("no rows with status ok in " + ", ".join(args.csv))
    ylabel, column = METRICS[args.metric]
    fields = series_key_fields(rows, len(args.csv))
    series = {}
    for r in rows:
        series.setdefault(tuple(r[f] for f in fields), []).append(r)

    fig, ax = plt.subplots(figsize=(11, 5.5))
    xs_all = set()
    for key in sorted(series):  # each key position holds one type: ints sort as numbers
        pts = sorted(series[key], key=lambda r: r["Lk"])
        xs = [r["Lk"] for r in pts]
        ys = [r[column] for r in pts]
        xs_all.update(xs)
        ax.plot(xs, ys, marker="o", linewidth=1.5, markersize=4, label=label_of(key, fields))
    if len(xs_all) > 1 and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(xs_all))
    ax.set_xticklabels([str(x) for x in sorted(xs_all)])
    ax.minorticks_off()
    same_len = all(r["Lq"] == r["Lk"] for r in rows)
    ax.set_xlabel("sequence length L (Lq = Lk)" if same_len else "key length Lk")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(args.title if args.title is not None else default_title(rows, ylabel))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              ncol=2 if len(series) > 20 else 1)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=args.dpi)
    except OSError as e:
        die(f"cannot write '{args.output}': {e.strerror}")
    print(f"plot.py: wrote {args.output} ({len(rows)} points, {len(series)} series)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
