"""Draws results/latest.png from a results JSON (run with the peers venv's python: matplotlib).

Usage: python benchmarks/chart.py RESULTS.json OUT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"floor": "#7f7f7f", "floor-kept": "#c7c7c7", "pyinfra": "#1f77b4",
           "ansible": "#d62728", "ansible-tuned": "#ff7f0e", "provisioner-first": "#17561a",
           "provisioner": "#2ca02c", "provisioner-newlogin": "#98df8a"}


def main(source: str, target: str) -> None:
    with open(source, encoding="utf-8") as stream:
        results = json.load(stream)
    scenarios = [(name, data) for name, data in results["scenarios"].items()
                 if not data.get("skipped") and data.get("tools")]
    tools = [tool for tool in COLOURS if any(tool in data["tools"] for _, data in scenarios)]
    figure, axes = plt.subplots(figsize=(max(6, 1.9 * len(scenarios)), 4.8))
    width = 0.8 / max(1, len(tools))
    for offset, tool in enumerate(tools):
        xs, medians, low, high = [], [], [], []
        for index, (_, data) in enumerate(scenarios):
            summary = data["tools"].get(tool, {}).get("summary")
            if not summary:
                continue
            xs.append(index + (offset - (len(tools) - 1) / 2) * width)
            medians.append(summary["wall_median"])
            low.append(summary["wall_median"] - summary["wall_min"])
            high.append(summary["wall_max"] - summary["wall_median"])
        bars = axes.bar(xs, medians, width, yerr=[low, high], capsize=2, label=tool,
                        color=COLOURS[tool])
        axes.bar_label(bars, [f"{value:.3g}" for value in medians], fontsize=6, padding=2)
    axes.set_xticks(range(len(scenarios)), [name for name, _ in scenarios])
    axes.set_yscale("log")
    axes.set_ylim(bottom=0.1)
    axes.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.set_ylabel("wall time, seconds (median, min-max; log scale)")
    machine = results["machine"]
    axes.set_title(f"provisioner benchmark {results['date']} - {machine['cores']} cores, "
                   f"{results['reps']} alternated reps", fontsize=10)
    axes.legend(fontsize=8, ncols=len(tools), loc="upper center", bbox_to_anchor=(0.5, -0.07))
    axes.grid(axis="y", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(target, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
